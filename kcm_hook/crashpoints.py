"""A test-only switch that kills the process at a named step of a change.

KCM_TEST_CRASH_AT=<point> makes the process SIGKILL itself when it reaches
<point>, so that tests can prove a crash between any two writes leaves a
configuration that parses and that one reconcile repairs. The variable is
read once, at import; unset, `reached` compares one string and returns.
"""

import os

# The points, in the order a change reaches them.
ALLOCATE = (
    "allocate:chosen",          # a cpuset picked, nothing written
    "allocate:confined",        # the cgroup confined, nothing recorded
    "atomic:holders.json",      # the new holders.json written aside, not renamed
    "allocate:recorded-holder",  # holders.json has the record, tasks not yet
    "atomic:tasks",             # the new tasks file written aside, not renamed
    "allocate:done",            # both written, lock still held
)
RELEASE = (
    "release:chosen",           # the holders to free found, nothing written
    "atomic:tasks",
    "release:dropped-tasks",    # tasks files updated, holders.json not yet
    "atomic:holders.json",
    "release:done",
)

_CRASH_AT = os.environ.get("KCM_TEST_CRASH_AT") or None


def reached(point):
    """SIGKILL this process when KCM_TEST_CRASH_AT names `point`."""
    if _CRASH_AT is not None and _CRASH_AT == point:
        import signal  # here: the hooks' path, which never crashes on purpose, skips it

        os.kill(os.getpid(), signal.SIGKILL)
