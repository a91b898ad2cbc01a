"""Taking a cpuset from a pool and giving it back, under the lock.

Shared by the prestart hook, `isolate` and `reconcile`. Every function here
that changes the configuration expects the caller to hold `conf.locked()`.
"""

from . import cgroups, cpulist, crashpoints, logs, procfs, topology
from .errors import CgroupError, ConfigError, CpuListError, PoolError, PoolExhausted
from .pools import Holder

log = logs.get_logger(__name__)


def allocate(conf, pool_name, pid, container=None, confine=None, cgroup=None):
    """Give `pid` a cpuset of `pool_name` and return its cpulist.

    `confine(cpus)` is called before anything is recorded, so a failure to
    confine leaves no trace. A container that already holds a cpuset keeps it.
    `cgroup`, the directory `confine` writes, is recorded for repair_drift.
    """
    holders = conf.holders()
    if container is not None:
        held = _held_by_container(conf, holders, container, pid, pool_name)
        if held is not None:
            return held

    pool = conf.pool(pool_name)
    conf.check_disjoint()
    cpuset = _choose(conf, pool, holders)
    _check_online(pool, cpuset)
    crashpoints.reached("allocate:chosen")
    if confine is not None:
        confine(cpuset.cpus)
    crashpoints.reached("allocate:confined")

    holders.append(Holder(pid=pid, start=procfs.start_time(pid), pool=pool.name,
                          cpus=cpuset.cpus, container=container, cgroup=cgroup))
    conf.write_holders(holders)
    crashpoints.reached("allocate:recorded-holder")
    cpuset.tasks.append(pid)
    conf.write_tasks(pool.name, cpuset)
    crashpoints.reached("allocate:done")
    log.info("allocated pool=%s cpus=%s pid=%s container=%s",
             pool.name, cpuset.cpus, pid, container)
    return cpuset.cpus


def _held_by_container(conf, holders, container, pid, pool_name):
    """The cpulist `container` already holds in `pool_name` with `pid`, or None.

    Records of the same container id with another pid belong to an earlier
    container of that id that ended without a poststop: they are freed first.
    """
    mine = [h for h in holders if h.container == container]
    if any(h.pid != pid for h in mine):
        release(conf, container=container)
        holders[:] = conf.holders()
        return None
    for holder in mine:
        if holder.pool == pool_name:
            return holder.cpus
    if mine:
        raise PoolError(f"container {container} already holds cpuset {mine[0].cpus} "
                        f"of pool {mine[0].pool!r}: a container takes one pool; stop "
                        "it before asking for another")
    return None


def _choose(conf, pool, holders):
    if not pool.cpusets:
        raise PoolError(f"pool {pool.name!r} has no cpusets (init gave it no cores); "
                        "choose another pool or re-run init with more cores for it")
    if not pool.exclusive:
        return pool.least_loaded()
    cpuset = pool.free_cpuset()
    if cpuset is None and sweep(conf, holders, only_pool=pool):
        cpuset = pool.free_cpuset()
    if cpuset is None:
        raise PoolExhausted(
            f"pool {pool.name!r} is exhausted: {len(pool.cpusets)} of "
            f"{len(pool.cpusets)} exclusive cpusets in use; stop a container of "
            "that pool or choose another pool")
    return cpuset


def _check_online(pool, cpuset):
    missing = set(cpulist.parse(cpuset.cpus)) - set(topology.online_cpus())
    if missing:
        raise ConfigError(f"cpuset {cpuset.cpus} of pool {pool.name!r} names CPUs "
                          f"{cpulist.format(missing)} that are offline or absent: "
                          "bring them online, or re-run kcm-hook init --overwrite")


def release(conf, container=None, pid=None):
    """Free what `container` (or `pid`) holds; return the freed holders."""
    holders = conf.holders()
    if container is not None:
        freed = [h for h in holders if h.container == container]
    else:
        freed = [h for h in holders if h.container is None and h.pid == pid]
    if not freed:
        return []
    crashpoints.reached("release:chosen")
    pools = {}
    for holder in freed:
        _drop_task(conf, pools, holder.pool, holder.cpus, holder.pid)
    crashpoints.reached("release:dropped-tasks")
    conf.write_holders([h for h in holders if h not in freed])
    crashpoints.reached("release:done")
    for holder in freed:
        log.info("freed pool=%s cpus=%s pid=%s container=%s",
                 holder.pool, holder.cpus, holder.pid, holder.container)
    return freed


def _drop_task(conf, pools, pool_name, cpus, pid):
    if pool_name not in pools:
        try:
            pools[pool_name] = conf.pool(pool_name)
        except PoolError:
            log.warning("pool %s of a holder no longer exists", pool_name)
            pools[pool_name] = None
    pool = pools[pool_name]
    cpuset = pool.cpusets.get(cpus) if pool else None
    if cpuset is not None and pid in cpuset.tasks:
        cpuset.tasks = [task for task in cpuset.tasks if task != pid]
        conf.write_tasks(pool_name, cpuset)


def sweep(conf, holders=None, only_pool=None):
    """Free every task whose process is gone or is another process now.

    Also drops holder records whose pid is missing from its tasks file (an
    allocation that never finished, or a release half done). Returns the
    number of entries freed. `holders` is updated in place when given. A
    sweep of every pool also deletes files a killed writer left aside.
    """
    holders = conf.holders() if holders is None else holders
    if only_pool is None:
        for path in conf.remove_stale_temporaries():
            log.info("removed %s, left by a writer that died", path)
    pools = [only_pool] if only_pool is not None else list(conf.pools().values())
    by_key = {(h.pool, h.cpus, h.pid): h for h in holders}
    live_keys, stale_keys = set(), set()
    freed = 0

    for pool in pools:
        for cpuset in pool.cpusets.values():
            keep = []
            for pid in cpuset.tasks:
                holder = by_key.get((pool.name, cpuset.cpus, pid))
                if procfs.is_holder(pid, holder.start if holder else None):
                    keep.append(pid)
                    live_keys.add((pool.name, cpuset.cpus, pid))
                else:
                    stale_keys.add((pool.name, cpuset.cpus, pid))
                    log.info("freed stale task pool=%s cpus=%s pid=%s container=%s",
                             pool.name, cpuset.cpus, pid,
                             holder.container if holder else None)
                    freed += 1
            if keep != cpuset.tasks:
                cpuset.tasks = keep
                conf.write_tasks(pool.name, cpuset)

    swept = {pool.name for pool in pools}
    kept = []
    for holder in holders:
        key = (holder.pool, holder.cpus, holder.pid)
        if holder.pool not in swept or key in live_keys:
            kept.append(holder)
        elif key not in stale_keys:
            log.info("dropped unfinished record pool=%s cpus=%s pid=%s container=%s",
                     holder.pool, holder.cpus, holder.pid, holder.container)
            freed += 1
    if len(kept) != len(holders):
        holders[:] = kept
        conf.write_holders(kept)
    return freed


def drift(conf, holders=None):
    """Yield (holder, cgroup, actual cpulist) for each live container whose cgroup
    is no longer confined to the cpuset kcm recorded for it."""
    for holder in conf.holders() if holders is None else holders:
        if holder.container is None or not procfs.is_holder(holder.pid, holder.start):
            continue
        try:
            cgroup = cgroups.cgroup_of(holder.pid)
            actual = cgroup.read_cpus()
        except CgroupError as err:
            log.debug("no cgroup for pid %s: %s", holder.pid, err)
            continue
        try:
            same = cpulist.parse(actual) == cpulist.parse(holder.cpus)
        except CpuListError:
            same = False
        if not same:
            yield holder, cgroup, actual


def repair_drift(conf, holders=None):
    """Confine each drifted container to its recorded cpuset again; return how many.

    Only a cgroup kcm confined itself is written: one whose directory was
    recorded at allocation and still holds the container. A process that has
    moved, or a record without a cgroup, is left alone with a warning, since
    the cgroup it is in now may be shared with processes that are not kcm's.
    """
    repaired = 0
    for holder, cgroup, actual in list(drift(conf, holders)):
        if holder.cgroup is None or cgroup.path != holder.cgroup:
            log.warning("not repairing container %s (pid %s): it is in %s, not in the "
                        "cgroup kcm confined (%s)", holder.container, holder.pid,
                        cgroup.path, holder.cgroup)
            continue
        try:
            cgroup.confine(holder.cpus)
        except CgroupError as err:
            log.error("cannot repair container %s: %s", holder.container, err)
            continue
        log.info("repaired drift container=%s pid=%s cpus=%s (was %s)",
                 holder.container, holder.pid, holder.cpus, actual)
        repaired += 1
    return repaired
