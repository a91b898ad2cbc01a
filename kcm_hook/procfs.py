"""What /proc says about a process: whether it lives, and which one it is.

PIDs are reused, so a holder is recorded as (pid, start time). The start time
is field 22 of /proc/<pid>/stat, in clock ticks since boot (proc(5)); it is
read after the last ")" because the command name may contain spaces and
parentheses. The root is /proc unless KCM_PROCFS names another tree.

A zombie ("Z") is a process that has ended, except when it is a thread-group
leader that called pthread_exit(3) while other threads run on: the kernel
shows the leader as a zombie until the last thread ends, and the process is
alive as long as /proc/<pid>/task lists more threads than the leader.
"""

import os


def procfs_root():
    return os.environ.get("KCM_PROCFS", "/proc")


def start_time(pid):
    """The start time of `pid`, or None when there is no such process."""
    try:
        with open(os.path.join(procfs_root(), str(pid), "stat"), "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); field 22 is therefore fields[19].
    if fields[0] in (b"Z", b"X") and not _other_threads_run(pid):
        return None
    return int(fields[19])


def _other_threads_run(pid):
    try:
        return len(os.listdir(os.path.join(procfs_root(), str(pid), "task"))) > 1
    except OSError:
        return False


def is_holder(pid, recorded_start):
    """True when `pid` is alive and, if a start time was recorded, the same process."""
    current = start_time(pid)
    if current is None:
        return False
    return recorded_start is None or current == recorded_start
