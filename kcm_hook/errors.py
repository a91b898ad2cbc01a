"""The exceptions kcm-hook raises for operational errors.

The command line catches `KcmError`, prints its message as one line and exits
with `exit_code`; library code raises and never exits.
"""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SIGPIPE = 141  # stdout closed early: 128 + SIGPIPE, as a shell expects
# isolate, as env(1) and nice(1) do: its command exists but cannot be run, or
# does not exist.
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127


class KcmError(Exception):
    """An operational error: the message says what is wrong and how to fix it."""

    exit_code = EXIT_ERROR


class UsageError(KcmError):
    """The command line or its values are wrong."""

    exit_code = EXIT_USAGE


class CpuListError(KcmError):
    """A cpulist does not follow the kernel's list syntax."""


class TopologyError(KcmError):
    """The CPU topology cannot be read or cannot hold the requested layout."""


class ConfigError(KcmError):
    """The configuration directory is missing, malformed or unsafe."""


class LockTimeout(KcmError):
    """Another kcm-hook process held the lock for too long."""


class PoolError(KcmError):
    """A pool does not exist or has no cpuset to give."""


class PoolExhausted(PoolError):
    """Every cpuset of an exclusive pool is taken."""


class StateError(KcmError):
    """The OCI state on stdin, or the bundle it names, is malformed."""


class CgroupError(KcmError):
    """A container's cgroup cannot be found or written."""


class AffinityError(KcmError):
    """The CPU affinity of a process cannot be set."""


class CommandError(KcmError):
    """The command given to isolate cannot be run; `exit_code` says why."""

    def __init__(self, message, exit_code=EXIT_NOT_FOUND):
        super().__init__(message)
        self.exit_code = exit_code


class DockerError(KcmError):
    """dockerd did not answer, or answered with an error."""
