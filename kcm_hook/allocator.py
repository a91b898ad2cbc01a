"""Taking a cpuset from a pool and giving it back, under the lock.

Shared by the prestart hook, `isolate` and `reconcile`. Every function here
that changes the configuration expects the caller to hold `conf.locked()`.
"""

from . import logs, procfs
from .errors import PoolError, PoolExhausted
from .pools import Holder

log = logs.get_logger(__name__)


def allocate(conf, pool_name, pid, container=None, confine=None):
    """Give `pid` a cpuset of `pool_name` and return its cpulist.

    `confine(cpus)` is called before anything is recorded, so a failure to
    confine leaves no trace. A container that already holds a cpuset keeps it.
    """
    holders = conf.holders()
    if container is not None:
        for holder in holders:
            if holder.container == container and holder.pool == pool_name:
                return holder.cpus

    pool = conf.pool(pool_name)
    cpuset = _choose(conf, pool, holders)
    if confine is not None:
        confine(cpuset.cpus)

    holders.append(Holder(pid=pid, start=procfs.start_time(pid), pool=pool.name,
                          cpus=cpuset.cpus, container=container))
    conf.write_holders(holders)
    cpuset.tasks.append(pid)
    conf.write_tasks(pool.name, cpuset)
    log.info("allocated pool=%s cpus=%s pid=%s container=%s",
             pool.name, cpuset.cpus, pid, container)
    return cpuset.cpus


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


def release(conf, container=None, pid=None):
    """Free what `container` (or `pid`) holds; return the freed holders."""
    holders = conf.holders()
    if container is not None:
        freed = [h for h in holders if h.container == container]
    else:
        freed = [h for h in holders if h.container is None and h.pid == pid]
    if not freed:
        return []
    pools = {}
    for holder in freed:
        _drop_task(conf, pools, holder.pool, holder.cpus, holder.pid)
    conf.write_holders([h for h in holders if h not in freed])
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
    number of entries freed. `holders` is updated in place when given.
    """
    holders = conf.holders() if holders is None else holders
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
