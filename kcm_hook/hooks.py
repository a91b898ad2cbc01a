"""The OCI prestart and poststop hooks.

prestart: find the pool the container asks for, take a cpuset from it,
confine the container's cgroup to it and record the container's init pid.
poststop: free whatever the container id holds. Both read the state JSON on
stdin and write nothing to stdout; a failure is one line on stderr and a
non-zero exit, which the runtime shows to the user and which stops the
container from starting.
"""

from . import allocator, cgroups, logs, oci
from .pools import DEFAULT_POOL, Configuration

log = logs.get_logger(__name__)


def prestart(conf_dir, stdin, docker_host=None):
    """Place the container described on `stdin`; return its pool and cpulist."""
    state = oci.read_state(stdin, need_pid=True)
    conf = Configuration(conf_dir)

    name, source = state.pool_request()
    if name is None and docker_host:
        from . import docker_labels
        name, source = docker_labels.pool_label(docker_host, state.id), "Docker label"
    if name is None:
        name, source = DEFAULT_POOL, "default"
    oci.check_pool_name(name, source)

    cgroup = cgroups.cgroup_of(state.pid)
    with conf.locked():
        cpus = allocator.allocate(conf, name, state.pid, container=state.id,
                                  confine=cgroup.confine, cgroup=cgroup.path)
    log.debug("container %s (%s pool from %s) on CPUs %s", state.id, name, source, cpus)
    return name, cpus


def poststop(conf_dir, stdin):
    """Free what the container described on `stdin` holds; unknown ids are fine."""
    state = oci.read_state(stdin, need_pid=False)
    conf = Configuration(conf_dir)
    with conf.locked():
        freed = allocator.release(conf, container=state.id)
    if not freed:
        log.debug("container %s held no cpuset", state.id)
    return freed
