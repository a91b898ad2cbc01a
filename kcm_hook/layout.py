"""Laying out the three pools over a topology, and writing them with `init`.

Cores are handed out from the highest-numbered down, dataplane first, then
controlplane, so that CPU 0, where the kernel and housekeeping work tend to
run, stays in infra. Cores whose every thread is in isolcpus= are given to
dataplane before any other: the scheduler does not balance load onto them, so
they suit a pinned poller and nothing shared.
"""

import logging
import os
import shutil

from . import cpulist
from .errors import ConfigError, TopologyError, UsageError
from .pools import Configuration, make_dir, write_atomic

log = logging.getLogger(__name__)

DATAPLANE, CONTROLPLANE, INFRA = "dataplane", "controlplane", "infra"


def plan(topology, num_dp_cores, num_cp_cores):
    """Return {pool: (exclusive, [cpulist, ...])} for the requested core counts."""
    if num_dp_cores < 1:
        raise UsageError(f"--num-dp-cores={num_dp_cores}: must be 1 or more")
    if num_cp_cores < 0:
        raise UsageError(f"--num-cp-cores={num_cp_cores}: must be 0 or more")
    cores = topology.cores
    wanted = num_dp_cores + num_cp_cores + 1
    if len(cores) < wanted:
        raise TopologyError(
            f"asked for {num_dp_cores} dataplane + {num_cp_cores} controlplane cores "
            f"and at least 1 for infra ({wanted} physical cores), but this machine has "
            f"{len(cores)} online; lower --num-dp-cores or --num-cp-cores")

    by_preference = sorted(cores, key=lambda c: (c.isolated, c.cpus[0]), reverse=True)
    dataplane = by_preference[:num_dp_cores]
    rest = sorted((c for c in cores if c not in dataplane),
                  key=lambda c: (not c.isolated, c.cpus[0]), reverse=True)
    controlplane = rest[:num_cp_cores]
    infra = [c for c in cores if c not in dataplane and c not in controlplane]
    for core in infra:
        if core.isolated:
            log.warning("isolated CPUs %s go to the shared infra pool, where the "
                        "scheduler will not balance onto them",
                        cpulist.format(core.cpus))

    def merged(group):
        if not group:
            return []
        return [cpulist.format(cpu for core in group for cpu in core.cpus)]

    return {
        DATAPLANE: (True, sorted((cpulist.format(c.cpus) for c in dataplane),
                                 key=lambda text: cpulist.parse(text))),
        CONTROLPLANE: (False, merged(controlplane)),
        INFRA: (False, merged(infra)),
    }


def existing_plan(conf):
    return {name: (pool.exclusive, list(pool.cpusets))
            for name, pool in conf.pools().items()}


def init(conf_dir, topology, num_dp_cores, num_cp_cores, overwrite=False):
    """Write the pools of `plan` into `conf_dir`; return (Configuration, changed)."""
    layout = plan(topology, num_dp_cores, num_cp_cores)
    conf = Configuration(conf_dir)
    _prepare_dir(conf)

    with conf.locked():
        if os.path.lexists(conf.pools_dir):
            current = existing_plan(conf)
            if current == layout:
                return conf, False
            if not overwrite:
                raise ConfigError(
                    f"{conf.path} already holds a different layout "
                    f"({_summary(current)}); pass --overwrite to replace it")
            held = [f"{name}/{cpus}" for name, pool in conf.pools().items()
                    for cpus, cpuset in pool.cpusets.items() if cpuset.tasks]
            if held or conf.holders():
                raise ConfigError(
                    f"cannot overwrite {conf.path}: cpusets still held "
                    f"({', '.join(held) or 'see holders.json'}); stop those "
                    "containers or run kcm-hook reconcile first")
        _write_pools(conf, layout)
    return conf, True


def _prepare_dir(conf):
    """Create the directory and its lock file; refuse an unsafe existing one."""
    try:
        _make_dirs(conf.path)
    except OSError as err:
        raise ConfigError(f"cannot create {conf.path}: {err.strerror}") from err
    lock = os.path.join(conf.path, "lock")
    if not os.path.lexists(lock):
        write_atomic(lock, "")


def _make_dirs(path):
    """os.makedirs, but every directory it creates gets DIR_MODE, not just the last:
    a parent others can write would let them swap the configuration directory."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        _make_dirs(parent)
    try:
        make_dir(path)
    except FileExistsError:
        pass


def _write_pools(conf, layout):
    """Build the new pools tree aside and rename it into place."""
    staging = os.path.join(conf.path, ".pools.new")
    retired = os.path.join(conf.path, ".pools.old")
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        make_dir(staging)
        for name, (exclusive, cpusets) in layout.items():
            pool_dir = os.path.join(staging, name)
            make_dir(pool_dir)
            write_atomic(os.path.join(pool_dir, "exclusive"), "1" if exclusive else "0")
            for cpus in cpusets:
                make_dir(os.path.join(pool_dir, cpus))
                write_atomic(os.path.join(pool_dir, cpus, "tasks"), "")
        if os.path.lexists(conf.pools_dir):
            os.rename(conf.pools_dir, retired)
        os.rename(staging, conf.pools_dir)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"cannot write pools under {conf.path}: "
                          f"{err.strerror}") from err
    shutil.rmtree(retired, ignore_errors=True)
    conf.write_holders([])


def _summary(layout):
    return "; ".join(f"{name}: {','.join(cpusets) or 'none'}"
                     for name, (_, cpusets) in sorted(layout.items()))
