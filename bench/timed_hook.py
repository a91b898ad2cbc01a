"""kcm-hook with its lock timed: timed_hook.py ARGS... (the arguments of kcm-hook).

Wraps Configuration.locked so that each use prints one line to stdout,
{"wait": s, "hold": s, "acquired": t, "released": t} with t on the system's
monotonic clock (the same in every process), then runs the command as
kcm-hook would. For the benchmarks only: a real hook prints nothing.
"""

import json
import sys
import time

from kcm_hook import cli, pools

_locked = pools.Configuration.locked


class TimedLock:
    def __init__(self, inner):
        self.inner = inner

    def __enter__(self):
        self.asked = time.monotonic()
        held = self.inner.__enter__()
        self.acquired = time.monotonic()
        return held

    def __exit__(self, *exc_info):
        released = time.monotonic()
        try:
            return self.inner.__exit__(*exc_info)
        finally:
            sys.stdout.write(json.dumps({
                "wait": self.acquired - self.asked, "hold": released - self.acquired,
                "acquired": self.acquired, "released": released}) + "\n")


def timed_locked(self, timeout=None):
    return TimedLock(_locked(self, timeout))


if __name__ == "__main__":
    pools.Configuration.locked = timed_locked
    sys.exit(cli.main(sys.argv[1:], prog="kcm-hook"))
