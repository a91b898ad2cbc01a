"""Benchmark 6: how soon `reconcile --watch` frees a killed holder's cpuset.

With `kcm-hook reconcile --watch` running, a dataplane cpuset is taken by a
runc container (its init holds it) or by `kcm-hook isolate` (its command,
a child of isolate, holds it). The container's init, or the isolate
process itself, is SIGKILLed; isolate's child then dies of its parent-death
signal, so in both cases only the watcher can free the cpuset. The
configuration is read, as describe reads it, until the cpuset is free.
Compared with the periodic sweep, whose expected wait is half its period.

The watcher runs from this checkout's virtual environment, which has
pyroute2 for the process events; where `kcm-hook install` exists, a watcher
started from the installed program is also asked whether it can listen.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time

from bench import common
from integration.runc import Runc, make_bundle, make_rootfs, read_when, wait_for
from kcm_hook.pools import Configuration

TITLE = "reclaim: SIGKILL a dataplane holder, time until describe shows it free"
KINDS = ["container init", "isolate"]
TARGET_P99 = 0.100
SWEEP_INTERVAL = 10.0  # the default safety-net period of reconcile --watch
DEADLINE = 30.0
READY = "reconciling"  # the watcher's first info line
NO_EVENTS = "cannot listen"


def missing():
    for module in ("kcm_hook.reconcile", "kcm_hook.isolate"):
        if importlib.util.find_spec(module) is None:
            return f"{module} (branch isolate-reconcile) is not on main yet"
    return None


def run(work, runs):
    reason = missing()
    if reason:
        return common.unavailable(6, TITLE, reason)
    result = common.Result(6, TITLE)
    conf_dir = common.host_conf(work)
    hooks = common.kcm_hooks(work, conf_dir)
    launcher = os.path.join(work, "kcm-hook")
    bundle = make_bundle(os.path.join(work, "holder"), ["sleep", "600"],
                         rootfs=make_rootfs(os.path.join(work, "rootfs")),
                         annotations={"kcm.pool": "dataplane"}, hooks=hooks)
    runc = Runc(os.path.join(work, "runc-root"))
    watch, log = _watcher([sys.executable, "-m", "kcm_hook"], conf_dir, work, "venv")
    holders = {"container init": lambda tag: _container(runc, bundle, work, tag),
               "isolate": lambda tag: _isolate(launcher, conf_dir)}
    samples = {kind: [] for kind in KINDS}
    try:
        for index, kind in common.rounds(KINDS, runs):
            samples[kind].append(_reclaim(conf_dir, holders[kind], index, watch))
    finally:
        watch.terminate()
        watch.wait(DEADLINE)
        runc.cleanup()
    _report(result, samples, log)
    installed = _installed_listens(work, conf_dir)
    if installed is not None:
        result.row("installed watcher listens to process events", installed)
    return result


def _watcher(program, conf_dir, work, tag):
    """Start reconcile --watch; return (process, its log text) once it is serving."""
    log_path = os.path.join(work, f"watch-{tag}.log")
    env = {**common.hook_environ(), "KCM_LOG_LEVEL": "info"}
    with open(log_path, "w") as log:
        watch = subprocess.Popen([*program, "reconcile", "--watch",
                                  f"--conf-dir={conf_dir}"], env=env,
                                 stdin=subprocess.DEVNULL, stderr=log)
    return watch, read_when(log_path, READY, DEADLINE)


def _installed_listens(work, conf_dir):
    """'yes', or the watcher's reason, for the program `kcm-hook install` writes."""
    if importlib.util.find_spec("kcm_hook.install") is None:
        return None
    install_dir = os.path.join(work, "install")
    subprocess.run([sys.executable, "-m", "kcm_hook", "install",
                    f"--install-dir={install_dir}", f"--conf-dir={conf_dir}"],
                   check=True, capture_output=True)
    watch, log = _watcher([os.path.join(install_dir, "kcm-hook")], conf_dir, work,
                          "installed")
    watch.terminate()
    watch.wait(DEADLINE)
    lines = [line for line in log.splitlines() if NO_EVENTS in line]
    if not lines:
        return "yes"
    reason = re.search(r"\((.*?)\):", lines[0])
    return f"no ({reason.group(1) if reason else lines[0][-80:]})"


def _held(conf_dir):
    """The pids holding a dataplane cpuset, read as describe reads them."""
    pool = Configuration(conf_dir).pool("dataplane")
    return [pid for cpuset in pool.cpusets.values() for pid in cpuset.tasks]


def _container(runc, bundle, work, tag):
    """A runc container holding dataplane: (the pid to kill, its holder, cleanup)."""
    container_id = f"holder-{tag}"
    if runc.run_detached(container_id, bundle, os.path.join(work, "holder.log")) != 0:
        raise RuntimeError(f"runc run {container_id} failed (see holder.log)")
    pid = runc.state(container_id)["pid"]
    return pid, pid, lambda: runc.delete(container_id)


def _isolate(launcher, conf_dir):
    """`kcm-hook isolate` holding dataplane: (isolate's pid, its child's, cleanup)."""
    proc = subprocess.Popen([launcher, "isolate", "--pool=dataplane",
                             f"--conf-dir={conf_dir}", "sleep", "--", "600"],
                            env=common.hook_environ(), stdin=subprocess.DEVNULL)
    [child] = wait_for(lambda: _held(conf_dir), DEADLINE, "isolate to hold the cpuset")

    def cleanup():
        proc.kill()
        proc.wait()
    return proc.pid, child, cleanup


def _reclaim(conf_dir, make_holder, tag, watch):
    """Seconds from SIGKILL of the holder until its cpuset shows free."""
    victim, holder, cleanup = make_holder(tag)
    try:
        wait_for(lambda: _held(conf_dir) == [holder], DEADLINE,
                 f"pid {holder} to hold dataplane")
        start = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        while _held(conf_dir):
            if time.perf_counter() - start > DEADLINE or watch.poll() is not None:
                raise RuntimeError(f"the cpuset of killed pid {victim} was not freed "
                                   f"(reconcile --watch exit: {watch.poll()})")
            time.sleep(0.0005)
        return time.perf_counter() - start
    finally:
        cleanup()


def _report(result, samples, log):
    if NO_EVENTS in log:
        result.notes.append("the watcher could not listen to process events: "
                            + log.split(NO_EVENTS, 1)[1].splitlines()[0][:120])
    for kind in KINDS:
        values = samples[kind]
        p99 = common.percentile(values, 99)
        result.row(f"{kind}: p50 | p99", f"{common.ms(common.median(values))} | "
                   f"{common.ms(p99)}", "p99 <= 100 ms", p99 <= TARGET_P99)
    result.row("periodic sweep alone: expected wait",
               f"{SWEEP_INTERVAL / 2:.1f} s (half its {SWEEP_INTERVAL:g} s period)")
    result.raw = {"seconds": samples, "watcher_log": log}
