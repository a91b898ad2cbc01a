"""The exceptions kcm-hook raises for operational errors.

The command line catches `KcmError`, prints its message as one line and exits
with `exit_code`; library code raises and never exits.
"""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


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


class DockerError(KcmError):
    """dockerd did not answer, or answered with an error."""
