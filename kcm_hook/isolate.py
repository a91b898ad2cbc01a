"""`isolate`: run a command confined to a cpuset of a pool.

The command runs in a child of isolate, and that child is the holder. It is
forked first and waits on a pipe; under the lock isolate takes a cpuset, sets
the child's CPU affinity and records the child's pid and start time; only
then does the child exec the command. When the command ends, isolate frees
the cpuset before it reaps the child, so the recorded pid cannot be reused
meanwhile.

The child asks for SIGKILL when isolate dies (prctl(2) PR_SET_PDEATHSIG), so
a killed isolate leaves no command running: its record names a dead process,
which reconcile frees. The kernel clears that request when the command is a
set-user-ID or file-capability program; such a command outlives a killed
isolate, still confined and recorded, and reconcile frees it once it ends.
"""

import ctypes
import errno
import logging
import os
import shutil
import signal

from . import allocator, cpulist, oci
from .errors import (
    EXIT_CANNOT_RUN,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    AffinityError,
    CommandError,
    KcmError,
)
from .pools import Configuration

log = logging.getLogger(__name__)

CPUS_ENV = "KCM_CPUS_ASSIGNED"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WAITED = {signal.SIGCHLD, *FORWARDED}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SI_KERNEL = 0x80  # <asm-generic/siginfo.h>: sent by the kernel, e.g. the tty
EXIT_ABANDONED = 125  # the child's status when isolate gave up before exec


def run(conf_dir, pool, argv):
    """Run `argv` confined to a cpuset of `pool`; return the command's exit status."""
    oci.check_pool_name(pool, "--pool option")
    conf = Configuration(conf_dir)
    conf.pool(pool)
    path = resolve(argv[0])

    # An inherited SIG_IGN for SIGCHLD would have the kernel reap the child
    # before isolate can read its status.
    old_chld = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
    try:
        child = Child(path, argv, old_mask, _dispositions(old_chld))
        try:
            cpus = _take(conf, pool, child.pid)
        except BaseException:
            child.abandon()
            raise
        return _run_child(conf, child, cpus)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGCHLD, old_chld)


def _dispositions(old_chld):
    """The signal dispositions the command starts with, as if run from a shell.

    Python ignores SIGPIPE and SIGXFSZ and handles SIGINT itself; the command
    gets the defaults back, as subprocess does, except for signals that were
    ignored when isolate started.
    """
    wanted = {signum: signal.SIG_DFL for signum in FORWARDED
              if signal.getsignal(signum) != signal.SIG_IGN}
    wanted.update({signal.SIGPIPE: signal.SIG_DFL, signal.SIGXFSZ: signal.SIG_DFL,
                   signal.SIGCHLD: old_chld})
    return wanted


def resolve(command):
    """The path of `command`, looked up in PATH unless it names a path."""
    found = shutil.which(command)
    if found is not None:
        return found
    if "/" in command and os.path.exists(command):
        raise CommandError(f"command {command!r} is not an executable file: "
                           "check its permissions", EXIT_CANNOT_RUN)
    if "/" in command:
        raise CommandError(f"command {command!r} does not exist: check the path")
    raise CommandError(f"command {command!r} not found in PATH "
                       f"({os.environ.get('PATH', os.defpath)}): give its full path")


def _take(conf, pool, pid):
    with conf.locked():
        return allocator.allocate(conf, pool, pid, confine=lambda cpus: _pin(pid, cpus))


def _pin(pid, cpus):
    try:
        os.sched_setaffinity(pid, cpulist.parse(cpus))
    except OSError as err:
        raise AffinityError(f"cannot set the CPU affinity of process {pid} to {cpus}: "
                            f"{err.strerror}; is isolate itself confined to a cpuset "
                            "without those CPUs?") from err


def _run_child(conf, child, cpus):
    stop = signal.sigtimedwait(FORWARDED, 0)
    if stop is not None:
        # Told to stop while waiting for the lock: do not start the command.
        _free(conf, child.pid)
        child.abandon()
        return 128 + stop.si_signo
    try:
        child.start(cpus)
    except CommandError:
        _free(conf, child.pid)
        child.reap()
        raise
    log.debug("pid %s runs %s on CPUs %s", child.pid, child.path, cpus)

    status = _supervise(child)
    _free(conf, child.pid)
    child.reap()
    return status


def _supervise(child):
    """Forward signals until the child exits; return its status, leaving it unreaped."""
    while True:
        info = signal.sigwaitinfo(WAITED)
        if info.si_signo == signal.SIGCHLD:
            status = child.exit_status()
            if status is not None:
                return status
        elif info.si_code != SI_KERNEL:
            # A signal from the tty reaches the whole foreground process group,
            # the child included: forwarding it would deliver it twice.
            child.kill(info.si_signo)


def _free(conf, pid):
    try:
        with conf.locked():
            allocator.release(conf, pid=pid)
    except KcmError as err:
        log.error("could not free the cpuset of pid %s: %s; run kcm-hook reconcile",
                  pid, err)


class Child:
    """A forked child that waits for its CPUs, then execs the command."""

    def __init__(self, path, argv, old_mask, dispositions):
        self.path = path
        gate_r, self._gate = os.pipe2(os.O_CLOEXEC)
        self._report, report_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            _child_main((gate_r, self._gate), (self._report, report_w), parent, path,
                        argv, old_mask, dispositions)
        os.close(gate_r)
        os.close(report_w)

    def start(self, cpus):
        """Let the child exec; raise CommandError when the exec fails."""
        try:
            os.write(self._gate, cpus.encode())
        except BrokenPipeError:
            os.close(self._report)
            raise CommandError(f"the process that was to run {self.path} exited "
                               "before it could", EXIT_ERROR) from None
        finally:
            os.close(self._gate)
            self._gate = None
        report = _read_all(self._report)
        os.close(self._report)
        if report:
            number = int(report)
            code = EXIT_NOT_FOUND if number == errno.ENOENT else EXIT_CANNOT_RUN
            raise CommandError(f"cannot run {self.path}: {os.strerror(number)}", code)

    def abandon(self):
        """Tell the waiting child to exit without running the command, and reap it."""
        if self._gate is not None:
            os.close(self._gate)
            self._gate = None
        os.close(self._report)
        self.reap()

    def exit_status(self):
        """The exit status once the child has ended (128+N for signal N), else None."""
        result = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if result is None or result.si_pid == 0:
            return None
        if result.si_code == os.CLD_EXITED:
            return result.si_status
        return 128 + result.si_status

    def kill(self, signum):
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def reap(self):
        os.waitpid(self.pid, 0)


def _child_main(gate, report, parent, path, argv, old_mask, dispositions):
    """In the child: never return, never raise into the parent's code.

    `gate` and `report` are pipes (read end, write end); the child keeps the
    read end of the gate and the write end of the report.
    """
    gate_r, report_w = gate[0], report[1]
    try:
        os.close(gate[1])
        os.close(report[0])
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(EXIT_ABANDONED)
        if os.getppid() != parent:  # isolate died before prctl took effect
            os._exit(EXIT_ABANDONED)
        cpus = _read_all(gate_r)
        if not cpus:  # isolate closed the gate without a cpuset
            os._exit(EXIT_ABANDONED)
        env = dict(os.environ, **{CPUS_ENV: cpus.decode()})
        for signum, disposition in dispositions.items():
            signal.signal(signum, disposition)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.execve(path, argv, env)
    except OSError as err:
        os.write(report_w, str(err.errno).encode())
    finally:
        os._exit(EXIT_ABANDONED)


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
