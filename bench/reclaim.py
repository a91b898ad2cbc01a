"""Benchmark 6: how soon `reconcile --watch` frees a killed holder's cpuset.

With `kcm-hook reconcile --watch` running, a dataplane cpuset is taken by a
runc container (its init holds it) or by `kcm-hook isolate` (its command
holds it); the holder is SIGKILLed and the configuration is read, as
describe reads it, until the cpuset is free. Compared with the periodic
sweep, whose expected wait is half its interval.
"""

import importlib.util
import os
import signal
import subprocess
import time

from bench import common
from integration.runc import Runc, make_bundle, make_rootfs, wait_for
from kcm_hook.pools import Configuration

TITLE = "reclaim: SIGKILL a dataplane holder, time until describe shows it free"
KINDS = ["container init", "isolate"]
TARGET_P99 = 0.100
SWEEP_INTERVAL = 10.0  # the default safety-net period of reconcile --watch
DEADLINE = 30.0


def missing():
    for module in ("kcm_hook.reconcile", "kcm_hook.isolate"):
        if importlib.util.find_spec(module) is None:
            return f"{module} (branch isolate-reconcile) is not on main yet"
    return None


def run(work, runs):
    reason = missing()
    if reason:
        return common.unavailable(6, TITLE, reason)
    conf_dir = common.host_conf(work)
    launcher = os.path.join(work, "kcm-hook")
    hooks = common.kcm_hooks(work, conf_dir)
    env = common.hook_environ()
    bundle = make_bundle(os.path.join(work, "holder"), ["sleep", "600"],
                         rootfs=make_rootfs(os.path.join(work, "rootfs")),
                         annotations={"kcm.pool": "dataplane"}, hooks=hooks)
    runc = Runc(os.path.join(work, "runc-root"))
    watch = subprocess.Popen([launcher, "reconcile", "--watch",
                              f"--conf-dir={conf_dir}"],
                             env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    holders = {"container init": lambda tag: _container(runc, bundle, work, tag),
               "isolate": lambda tag: _isolate(launcher, conf_dir, env)}
    samples = {kind: [] for kind in KINDS}
    try:
        for index, kind in common.rounds(KINDS, runs + 1):
            samples[kind].append(_reclaim(conf_dir, holders[kind], f"{index}", watch))
    finally:
        watch.terminate()
        watch.wait(DEADLINE)
        runc.cleanup()
    for kind in KINDS:  # the first of each kind also waited for the watcher to start
        del samples[kind][0]
    result = common.Result(6, TITLE)
    _report(result, samples)
    return result


def _held(conf_dir):
    """The pids holding a dataplane cpuset, read as describe reads them."""
    pool = Configuration(conf_dir).pool("dataplane")
    return [pid for cpuset in pool.cpusets.values() for pid in cpuset.tasks]


def _container(runc, bundle, work, tag):
    """A runc container holding the dataplane cpuset: (its init pid, cleanup)."""
    container_id = f"holder-{tag}"
    if runc.run_detached(container_id, bundle, os.path.join(work, "holder.log")) != 0:
        raise RuntimeError(f"runc run {container_id} failed (see holder.log)")
    return runc.state(container_id)["pid"], lambda: runc.delete(container_id)


def _isolate(launcher, conf_dir, env):
    """`kcm-hook isolate` holding the dataplane cpuset: (the holder's pid, cleanup)."""
    proc = subprocess.Popen([launcher, "isolate", "--pool=dataplane",
                             f"--conf-dir={conf_dir}", "sleep", "--", "600"],
                            env=env, stdin=subprocess.DEVNULL)
    [pid] = wait_for(lambda: _held(conf_dir), DEADLINE, "isolate to hold the cpuset")

    def cleanup():
        proc.kill()
        proc.wait()
    return pid, cleanup


def _reclaim(conf_dir, make_holder, tag, watch):
    pid, cleanup = make_holder(tag)
    try:
        wait_for(lambda: _held(conf_dir) == [pid], DEADLINE,
                 f"pid {pid} to hold dataplane")
        start = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while _held(conf_dir):
            if time.perf_counter() - start > DEADLINE or watch.poll() is not None:
                raise RuntimeError(f"the cpuset of killed pid {pid} was not freed "
                                   f"(reconcile --watch exit: {watch.poll()})")
            time.sleep(0.0005)
        return time.perf_counter() - start
    finally:
        cleanup()


def _report(result, samples):
    for kind in KINDS:
        values = samples[kind]
        p99 = common.percentile(values, 99)
        result.row(f"{kind}: p50 | p99", f"{common.ms(common.median(values))} | "
                   f"{common.ms(p99)}", "p99 <= 100 ms", p99 <= TARGET_P99)
    result.row("periodic sweep alone: expected wait",
               f"{SWEEP_INTERVAL / 2:.1f} s (half its {SWEEP_INTERVAL:g} s period)")
    result.raw = {"seconds": samples}
