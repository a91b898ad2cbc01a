"""`reconcile`: free the cpusets of holders that are gone.

Once, every S seconds (--interval), or as a long-running watcher (--watch)
that listens to the kernel's process event connector and sweeps as soon as
a recorded holder exits (Documentation/driver-api/connector.rst). The
kernel sends PROC_EVENT_EXIT from do_exit() right after exit_notify(), so the
process already shows as a zombie, or is gone, when the event is read. The
connector drops events when the socket overruns, and none are seen while no
watcher runs, so a full sweep runs at start and every S seconds as well.

Every sweep is allocator.sweep under the lock, which compares pid and start
time: a live holder is never freed, whatever the events say.
"""

import logging
import math
import os
import queue
import signal
import threading
import time
from contextlib import contextmanager

from . import allocator, procfs
from .errors import KcmError, UsageError
from .pools import HOLDERS_FILE, Configuration

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0
# A longer period would overflow the timers it is given to (1e300 s does).
MAX_INTERVAL = 7 * 24 * 3600
READY_TIMEOUT = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PROC_EVENT_EXIT = 0x80000000  # <linux/cn_proc.h>
MAX_BATCH = 4096
MAX_FAILURES = 3  # reads failing in a row, each on a new socket, before giving up

# Messages from the event reader and the signal handlers to the main loop.
STOP, READY = "stop", "ready"


class Lost:
    """Events were lost (socket overrun, read error); `reason` says how."""

    def __init__(self, reason):
        self.reason = reason


class ReaderFailed:
    """The event reader cannot go on; `error` says why, `hint` what would help."""

    def __init__(self, error, hint=None):
        self.error = error
        self.hint = hint or ("it needs root (CAP_NET_ADMIN) in the host's pid "
                             "namespace and a kernel built with CONFIG_PROC_EVENTS")


def run(conf_dir, interval=None, watch=False):
    """Sweep once, or until SIGTERM every `interval` seconds and/or on exit events."""
    conf = Configuration(conf_dir)
    if interval is None and not watch:
        freed, repaired = sweep_and_repair(conf)
        entries = "entry" if freed == 1 else "entries"
        containers = "container" if repaired == 1 else "containers"
        print(f"freed {freed} stale {entries} and re-confined {repaired} drifted "
              f"{containers} in {conf.path}")
        return 0
    period = check_interval(DEFAULT_INTERVAL if interval is None else interval)
    conf.check_exists()

    inbox = queue.SimpleQueue()
    with stop_signals(inbox):
        watching = watch and start_watching(inbox, period)
        serve(conf, period, inbox, watching)
    return 0


def check_interval(value):
    if not (math.isfinite(value) and 0 < value <= MAX_INTERVAL):
        raise UsageError(f"--interval={value:g}: must be a number of seconds above 0 "
                         f"and at most {MAX_INTERVAL} (a week)")
    return value


def sweep(conf):
    """One full sweep under the lock, then drift repaired; return the entries freed."""
    return sweep_and_repair(conf)[0]


def sweep_and_repair(conf):
    """One full sweep under the lock, then drift repaired; return both counts."""
    with conf.locked():
        return allocator.sweep(conf), allocator.repair_drift(conf)


def serve(conf, period, inbox, watching):
    """The main loop: sweep when due or when a holder exits, until STOP."""
    holders = HolderIndex(conf)
    log.info("reconciling %s: a full sweep every %g s%s", conf.path, period,
             ", and when a holder exits" if watching else "")
    next_sweep = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_sweep:
            _logged_sweep(conf, "periodic")
            next_sweep = now + period
        try:
            batch = _take_batch(inbox, next_sweep - now)
        except queue.Empty:
            continue
        if STOP in batch:
            log.info("stopping on signal")
            return
        failed = [item for item in batch if isinstance(item, ReaderFailed)]
        if failed:
            log.warning("process events stopped (%s): falling back to a full sweep "
                        "every %g s", failed[0].error, period)
            watching = False
        lost = [item for item in batch if isinstance(item, Lost)]
        if lost:
            log.warning("process events were lost (%s): sweeping", lost[0].reason)
            _logged_sweep(conf, "lost events")
        elif watching and holders.any_gone(i for i in batch if isinstance(i, int)):
            _logged_sweep(conf, "exit event")


def _take_batch(inbox, timeout):
    """Wait up to `timeout` for one message, then take what else is queued."""
    batch = [inbox.get(timeout=max(0.0, timeout))]
    while len(batch) < MAX_BATCH:
        try:
            batch.append(inbox.get_nowait())
        except queue.Empty:
            break
    return batch


def _logged_sweep(conf, why):
    try:
        freed = sweep(conf)
    except KcmError as err:
        # The configuration may be mended while the watcher runs: keep going.
        log.error("%s sweep failed: %s", why, err)
        return
    if freed:
        log.info("%s sweep freed %s entries", why, freed)


class HolderIndex:
    """The recorded holders' pids and start times, re-read when holders.json changes.

    The file is replaced by rename on every change, so its inode, mtime and
    size change too; a change this key misses is caught by the next periodic
    sweep.
    """

    def __init__(self, conf):
        self.conf = conf
        self.path = os.path.join(conf.path, HOLDERS_FILE)
        self._key = None
        self._starts = {}

    def starts(self):
        """{pid: [start, ...]} of the recorded holders."""
        try:
            st = os.stat(self.path)
        except OSError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            try:
                holders = self.conf.holders()
            except KcmError as err:
                log.error("cannot read the holders: %s", err)
                return {}
            self._starts = {}
            for holder in holders:
                self._starts.setdefault(holder.pid, []).append(holder.start)
            self._key = key
        return self._starts

    def any_gone(self, pids):
        """True when one of `pids` is a recorded holder that is no longer alive.

        TODO: kernels older than the move of proc_exit_connector() after
        exit_notify() send the event while the process still looks alive;
        there the cpuset waits for the next periodic sweep.
        """
        starts = self.starts()
        return any(not procfs.is_holder(pid, start)
                   for pid in set(pids) if pid in starts for start in starts[pid])


def start_watching(inbox, period, listen=None):
    """Start the event reader; True once it listens, False (with a warning) if not."""
    thread = threading.Thread(target=read_events, args=(inbox, listen),
                              name="proc-events", daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_TIMEOUT
    held = []  # a STOP that came first, handed back to the main loop
    try:
        while True:
            try:
                item = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = ReaderFailed(f"no answer within {READY_TIMEOUT:g} s")
            if item == READY:
                log.info("listening to process events")
                return True
            if isinstance(item, ReaderFailed):
                log.warning("cannot listen to the kernel's process events (%s): %s; "
                            "falling back to a full sweep every %g s", item.error,
                            item.hint, period)
                return False
            held.append(item)
    finally:
        for item in held:
            inbox.put(item)


def read_events(inbox, listen=None):
    """In the reader thread: put the pid of each exiting process into `inbox`.

    After an overrun (ENOBUFS) pyroute2 raises the same error on every later
    get(), so any failure to read starts over on a new socket, then reports
    the events lost in between.
    """
    listen = listen or listen_to_events
    sock = _listen_or_report(inbox, listen)
    if sock is None:
        return
    inbox.put(READY)
    failures = 0
    while True:
        try:
            messages = sock.get()
        except Exception as err:  # noqa: BLE001 any failure: start over
            _close(sock)
            failures += 1
            if failures > MAX_FAILURES:
                inbox.put(ReaderFailed(f"{failures} read failures in a row, the "
                                       f"last {_describe(err)}"))
                return
            sock = _listen_or_report(inbox, listen)
            if sock is None:
                return
            inbox.put(Lost(_describe(err)))
            continue
        failures = 0
        for message in messages:
            if message.get("what") == PROC_EVENT_EXIT:
                # The thread group id is the process id; a thread's exit
                # matters too, when it is the last one of a holder.
                inbox.put(message["process_tgid"])


def listen_to_events():
    """A pyroute2 ProcEventSocket listening to process events (imported here only)."""
    from pyroute2 import ProcEventSocket

    sock = ProcEventSocket()
    try:
        sock.bind()
        sock.control(listen=True)
    except BaseException:
        _close(sock)
        raise
    return sock


def _listen_or_report(inbox, listen):
    # pyroute2 hides the errno of a failed bind(2) behind KeyError("no free
    # address available"), hence the broad catch.
    try:
        return listen()
    except ImportError as err:
        inbox.put(ReaderFailed(_describe(err), "install pyroute2 for the Python "
                               "that runs kcm-hook"))
    except Exception as err:  # noqa: BLE001 OSError, NetlinkError, KeyError...
        inbox.put(ReaderFailed(_describe(err)))
    return None


def _close(sock):
    try:
        sock.close()
    except Exception:  # closing a broken socket: nothing to add
        log.debug("closing the event socket failed", exc_info=True)


def _describe(err):
    kind = type(err)
    name = kind.__name__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__name__}"
    return f"{name}: {err or 'no detail'}"


@contextmanager
def stop_signals(inbox):
    """Turn SIGTERM and SIGINT into a STOP message in `inbox` for the duration."""
    def handle(signum, frame):
        inbox.put(STOP)  # SimpleQueue.put is reentrant: safe in a signal handler

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
