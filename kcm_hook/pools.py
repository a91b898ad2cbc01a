"""The configuration directory: pools, their cpusets, who holds them, and the lock.

The on-disk format is shared with other tools and must always tell the truth
to a reader that knows only these three kinds of files:

  <conf-dir>/lock                          flock(2)ed around every change
  <conf-dir>/pools/<pool>/exclusive        "1": one holder per cpuset; "0": shared
  <conf-dir>/pools/<pool>/<cpulist>/tasks  the holders' PIDs, comma separated

kcm-hook also keeps <conf-dir>/holders.json: for each holder its pid, its
start time (PIDs are reused), its container id and its cpuset. A change is
written in this order so that a crash between two writes leaves nothing a
reconcile cannot repair: on allocation holders.json first, then tasks (a
record whose pid is missing from tasks is an allocation that never finished);
on release tasks first, then holders.json.
"""

import errno
import fcntl
import json
import os
import re
import stat
import time

from . import cpulist, crashpoints, procfs
from .errors import ConfigError, CpuListError, LockTimeout, PoolError, UsageError
from .records import Record

DEFAULT_CONF_DIR = "/etc/kcm"
DEFAULT_LOCK_TIMEOUT = 30.0
DEFAULT_POOL = "infra"
HOLDERS_FILE = "holders.json"
FILE_MODE = 0o644
MAX_FILE_BYTES = 1 << 20  # more than 5000 holders; a bigger file is not ours
# write_atomic's file aside: .<name>.<pid of the writer>.tmp
TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp")
DIR_MODE = 0o755


def conf_dir(path=None):
    """The configuration directory: `path`, else KCM_CONF_DIR, else /etc/kcm.

    An empty --conf-dir is refused rather than read as "not given": a script
    whose variable came out empty must not write /etc/kcm.
    """
    if path is not None and not path:
        raise UsageError("--conf-dir is empty: give the configuration directory")
    return path or os.environ.get("KCM_CONF_DIR") or DEFAULT_CONF_DIR


def lock_timeout():
    text = os.environ.get("KCM_LOCK_TIMEOUT")
    if text is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"KCM_LOCK_TIMEOUT={text!r} is not a positive number "
                         "of seconds")
    return value


class CpuSet(Record):
    """One cpuset of a pool, named by its canonical cpulist."""

    _fields = ("cpus", "tasks")

    def __init__(self, cpus, tasks=None):
        self.cpus = cpus
        self.tasks = [] if tasks is None else tasks


class Pool(Record):
    _fields = ("name", "exclusive", "cpusets")

    def __init__(self, name, exclusive, cpusets=None):
        self.name = name
        self.exclusive = exclusive
        self.cpusets = {} if cpusets is None else cpusets  # cpulist -> CpuSet, by CPU

    def free_cpuset(self):
        """The first cpuset with no holder, or None."""
        return next((c for c in self.cpusets.values() if not c.tasks), None)

    def least_loaded(self):
        return min(self.cpusets.values(), key=lambda c: len(c.tasks), default=None)


class Holder(Record):
    """A process holding a cpuset: a container's init or an isolated command."""

    _fields = ("pid", "start", "pool", "cpus", "container", "cgroup")

    def __init__(self, pid, start, pool, cpus, container=None, cgroup=None):
        self.pid = pid
        self.start = start  # int clock ticks, or None when unknown
        self.pool = pool
        self.cpus = cpus
        self.container = container  # container id, or None for isolate
        self.cgroup = cgroup  # the cpuset cgroup directory kcm confined, if any

    def to_json(self):
        doc = {"pid": self.pid, "start": self.start, "pool": self.pool,
               "cpus": self.cpus, "container": self.container}
        if self.cgroup is not None:
            doc["cgroup"] = self.cgroup
        return doc


class Configuration:
    """A configuration directory on disk. Changes are made inside `locked()`."""

    def __init__(self, path=None):
        self.path = os.path.abspath(conf_dir(path))
        self.pools_dir = os.path.join(self.path, "pools")

    # -- reading ---------------------------------------------------------

    def check_exists(self):
        _check_dir(self.path, "configuration directory", follow=True)
        _check_dir(self.pools_dir, "pools directory")

    def pool_names(self):
        self.check_exists()
        try:
            names = os.listdir(self.pools_dir)
        except OSError as err:
            raise ConfigError(f"cannot list {self.pools_dir}: {err.strerror}") from err
        return sorted(names)

    def pool(self, name, names=None):
        """Load pool `name`; `name` is matched against the pools on disk first."""
        if name not in (names if names is not None else self.pool_names()):
            known = ", ".join(names if names is not None else self.pool_names())
            raise PoolError(f"pool {name!r} does not exist in {self.path} "
                            f"(pools: {known or 'none'})")
        return self._load_pool(name)

    def pools(self):
        return {name: self._load_pool(name) for name in self.pool_names()}

    def _load_pool(self, name):
        pool_dir = os.path.join(self.pools_dir, name)
        _check_dir(pool_dir, f"pool {name!r}")
        exclusive_path = os.path.join(pool_dir, "exclusive")
        flag = _read_text(exclusive_path).strip()
        if flag not in ("0", "1"):
            raise ConfigError(f"{exclusive_path} holds {flag!r}: expected 1 or 0; "
                              "re-create the pool with kcm-hook init --overwrite")
        pool = Pool(name=name, exclusive=flag == "1")
        for _, entry in self._cpuset_dirs(name):
            tasks_path = os.path.join(pool_dir, entry, "tasks")
            pool.cpusets[entry] = CpuSet(cpus=entry, tasks=_parse_tasks(tasks_path))
        return pool

    def _cpuset_dirs(self, name):
        """[(cpu ids, cpulist)] of the cpuset directories of pool `name`, by CPU."""
        pool_dir = os.path.join(self.pools_dir, name)
        try:
            names = os.listdir(pool_dir)
        except OSError as err:
            raise ConfigError(f"cannot list {pool_dir}: {err.strerror}") from err
        entries = []
        for entry in names:
            if entry == "exclusive" or entry.startswith("."):
                continue
            entry_path = os.path.join(pool_dir, entry)
            try:
                cpus = cpulist.parse(entry)
            except CpuListError as err:
                raise ConfigError(f"{entry_path}: the directory name is not a cpulist "
                                  f"({err}); remove it or re-run init") from err
            if cpulist.format(cpus) != entry:
                raise ConfigError(f"{entry_path}: cpulist is not in canonical form "
                                  f"{cpulist.format(cpus)!r}; rename it")
            _check_dir(entry_path, f"cpuset {entry!r} of pool {name!r}")
            entries.append((cpus, entry))
        return sorted(entries)

    def check_disjoint(self):
        """Refuse cpusets that share a CPU, within one pool or across pools."""
        owner = {}
        for name in self.pool_names():
            _check_dir(os.path.join(self.pools_dir, name), f"pool {name!r}")
            for cpus, entry in self._cpuset_dirs(name):
                for cpu in cpus:
                    if cpu in owner:
                        raise ConfigError(
                            f"cpusets {owner[cpu]} and {name}/{entry} of {self.path} "
                            f"overlap on CPU {cpu}: no CPU may be in two cpusets; "
                            "re-run kcm-hook init --overwrite")
                    owner[cpu] = f"{name}/{entry}"

    def holders(self):
        """The holder records; an absent file means none."""
        path = os.path.join(self.path, HOLDERS_FILE)
        text = _read_text(path, missing_ok=True)
        if text is None:
            return []
        try:
            doc = json.loads(text)
            return [Holder(pid=h["pid"], start=h["start"], pool=h["pool"],
                           cpus=h["cpus"], container=h.get("container"),
                           cgroup=h.get("cgroup"))
                    for h in doc["holders"]]
        except KeyError as err:
            raise ConfigError(f"{path}: a record lacks the key {err}; remove the file "
                              "and run kcm-hook reconcile") from None
        except (ValueError, TypeError, RecursionError):
            raise ConfigError(f"{path} is not an object with a list of holder "
                              "records; remove it and run kcm-hook reconcile") from None

    # -- writing (call inside locked()) -----------------------------------

    def write_tasks(self, pool, cpuset):
        path = os.path.join(self.pools_dir, pool, cpuset.cpus, "tasks")
        write_atomic(path, ",".join(str(pid) for pid in cpuset.tasks))

    def write_holders(self, holders):
        doc = {"holders": [h.to_json() for h in holders]}
        write_atomic(os.path.join(self.path, HOLDERS_FILE),
                     json.dumps(doc, indent=1, sort_keys=True) + "\n")

    def describe(self):
        """The state in the original tool's JSON shape, with container ids added."""
        containers = {}
        for holder in self.holders():
            if holder.container is not None:
                key = (holder.pool, holder.cpus)
                containers.setdefault(key, []).append(holder.container)
        return {"path": self.path, "pools": {
            name: {"name": name, "exclusive": pool.exclusive, "cpuLists": {
                cpus: {"cpus": cpus, "tasks": cpuset.tasks,
                       "containers": containers.get((name, cpus), [])}
                for cpus, cpuset in pool.cpusets.items()}}
            for name, pool in self.pools().items()}}

    def remove_stale_temporaries(self):
        """Delete the files a killed write_atomic left aside; return their paths."""
        removed = []
        for directory, _, files in os.walk(self.path):
            for name in files:
                match = TEMPORARY.fullmatch(name)
                if match and procfs.start_time(int(match["pid"])) is None:
                    path = os.path.join(directory, name)
                    _unlink_quietly(path)
                    removed.append(path)
        return removed

    def locked(self, timeout=None):
        """Hold the exclusive lock on <conf-dir>/lock for a with block."""
        return _Locked(self, timeout)


class _Locked:
    """The context manager of Configuration.locked().

    A class rather than contextlib.contextmanager: importing contextlib costs
    the hooks ~0.5 ms at every container start.
    """

    def __init__(self, conf, timeout):
        self.conf = conf
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        conf = self.conf
        _check_dir(conf.path, "configuration directory", follow=True)
        path = os.path.join(conf.path, "lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: run kcm-hook init") from None
        except OSError as err:
            raise ConfigError(f"cannot open {path}: {err.strerror}") from err
        try:
            _flock(fd, path, lock_timeout() if self.timeout is None else self.timeout)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return conf

    def __exit__(self, *exc_info):
        os.close(self.fd)
        self.fd = None


def _flock(fd, path, timeout):
    """flock(2) with a deadline: SIGALRM interrupts the wait in the main thread."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    # Imported here, on contention only: the uncontended hook path never needs them.
    import signal
    import threading

    message = (f"timed out after {timeout:g} s waiting for {path}: another kcm-hook "
               "holds it; retry, or raise KCM_LOCK_TIMEOUT")
    if threading.current_thread() is not threading.main_thread():
        _flock_polling(fd, timeout, message)
        return

    def expire(signum, frame):
        raise LockTimeout(message)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _flock_polling(fd, timeout, message):
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(message) from None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.05)


def _check_dir(path, what, follow=False):
    """Refuse a directory that is missing, a symlink, or writable by others."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist: run kcm-hook init") from None
    except OSError as err:
        raise ConfigError(f"cannot stat {path}: {err.strerror}") from err
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{what} {path} is a symlink: kcm-hook follows none inside "
                          "its configuration directory; replace it with a directory")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is not a directory")
    _check_owner(path, st, what)


def _check_owner(path, st, what):
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(f"{what} {path} is owned by uid {st.st_uid} with mode "
                          f"{stat.S_IMODE(st.st_mode):o}: it must belong to uid "
                          f"{os.geteuid()} and not be writable by group or others")


def _read_text(path, missing_ok=False):
    try:
        # O_NONBLOCK: a FIFO planted in place of a file must not stall the hook.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(f"{path} is missing: run kcm-hook init") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symlink: replace it with a file") from None
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConfigError(f"{path} is not a regular file: replace it with the file "
                          "kcm-hook init writes")
    with os.fdopen(fd, "rb") as f:
        _check_owner(path, st, "file")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_FILE_BYTES} bytes: it cannot be "
                          "kcm-hook's; fix or remove it")
    # isascii() rather than decode("ascii"), which refuses the same bytes: the
    # ascii codec would be one more import for the hooks.
    if path.endswith("tasks") and not data.isascii():
        raise ConfigError(f"{path} is not text; fix or empty it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not text; fix or empty it") from None


def _parse_tasks(path):
    text = _read_text(path).strip()
    if not text:
        return []
    pids = []
    for item in text.split(","):
        item = item.strip()
        if not (item.isascii() and item.isdigit()) or int(item) <= 0:
            raise ConfigError(f"{path} holds {item!r}: expected comma-separated PIDs; "
                              "fix the file, or empty it and run kcm-hook reconcile")
        pids.append(int(item))
    return pids


def make_dir(path):
    """mkdir with DIR_MODE whatever the umask (0755: the hooks' readers need it)."""
    os.mkdir(path, DIR_MODE)
    os.chmod(path, DIR_MODE)


def write_atomic(path, text, mode=FILE_MODE, sync=False):
    """Replace `path` by a file holding `text` (str or bytes): written aside, then
    renamed over it. `sync` flushes the data to disk before the rename."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")  # see TEMPORARY
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            data = memoryview(text if isinstance(text, bytes) else text.encode())
            while data:
                data = data[os.write(fd, data):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        crashpoints.reached(f"atomic:{name}")
        # TODO: the hooks write without `sync`: a SIGKILL cannot tear a file,
        # but a power loss on a file system without rename ordering could
        # leave an empty tasks file or holders.json.
        os.rename(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        raise ConfigError(f"cannot write {path}: {err.strerror} "
                          f"(errno {err.errno})") from err


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
