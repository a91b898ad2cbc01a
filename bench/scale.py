"""Benchmark 4: describe, one sweep and check on 64, 512 and 4096 CPUs.

Each configuration is made by init on a fake sysfs (cores of 2 threads; half
the cores dataplane, a quarter controlplane) and has every other dataplane
cpuset held by a real `sleep` process, recorded as the hooks record holders.
The holders are recorded as isolate records them (no container id): they
run in no cgroup kcm confined, which check would report of a container.
Timed per call: the command line end to end (interpreter start included, as
run by the virtual environment's python), and the library call alone, whose
growth from 512 to 4096 CPUs gives the exponent (1.0 is linear).
"""

import importlib.util
import math
import os
import subprocess
import sys
import time

from bench import common
from kcm_hook import allocator, layout, procfs, topology
from kcm_hook.pools import Configuration, Holder
from tests.conftest import make_sysfs

TITLE = "scale: describe / one sweep / check at 64, 512, 4096 CPUs, half held"
SIZES = [64, 512, 4096]
TARGET_SECONDS = 0.200
TARGET_EXPONENT = 1.15


def run(work, runs):
    result = common.Result(4, TITLE)
    # The command line as pip installs it: the virtual environment's python,
    # which has the packages check needs (jsonschema) and the hooks do not.
    launcher = common.write_launcher(os.path.join(work, "kcm-hook"), sys.executable)
    commands = _commands()
    sleepers = []
    try:
        confs = {size: _configuration(work, size, sleepers) for size in SIZES}
        samples = _measure(launcher, confs, commands, runs)
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
    result.raw = {"seconds": samples, "commands": commands}
    _report(result, samples, commands)
    return result


def _commands():
    """{name: argv after the program} for the commands this branch has."""
    commands = {"describe": ["describe"]}
    for name in ("reconcile", "check"):
        if importlib.util.find_spec(f"kcm_hook.{name}") is not None:
            commands[name] = [name]
    return commands


def _configuration(work, size, sleepers):
    root = os.path.join(work, f"cpus-{size}")
    cores = size // 2
    sysfs = make_sysfs(os.path.join(root, "sys"),
                       {cpu: (0, cpu % cores) for cpu in range(size)})
    conf_dir = os.path.join(root, "kcm")
    layout.init(conf_dir, topology.discover(sysfs), cores // 2, cores // 4)
    conf = Configuration(conf_dir)
    with conf.locked():
        pool = conf.pool("dataplane")
        holders = []
        for cpuset in list(pool.cpusets.values())[::2]:
            proc = subprocess.Popen(["sleep", "3600"])
            sleepers.append(proc)
            holders.append(Holder(pid=proc.pid, start=procfs.start_time(proc.pid),
                                  pool=pool.name, cpus=cpuset.cpus))
            cpuset.tasks = [proc.pid]
            conf.write_tasks(pool.name, cpuset)
        conf.write_holders(holders)
    return conf_dir, sysfs


def _measure(launcher, confs, commands, runs):
    env = common.hook_environ()
    calls = [f"cli {name}" for name in commands] + ["lib describe", "lib sweep"]
    samples = {call: {size: [] for size in SIZES} for call in calls}
    for index, size in common.rounds(SIZES, runs + 1):
        conf_dir, sysfs = confs[size]
        for name, args in commands.items():
            seconds, done = common.timed_run(
                [launcher, *args, f"--conf-dir={conf_dir}"],
                env={**env, "KCM_SYSFS": sysfs},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode != 0:
                raise RuntimeError(f"kcm-hook {name} on {size} CPUs failed: "
                                   f"{done.stderr.decode().strip()}")
            samples[f"cli {name}"][size].append(seconds)
        samples["lib describe"][size].append(_lib_describe(conf_dir))
        samples["lib sweep"][size].append(_lib_sweep(conf_dir))
    for call in samples.values():  # the first round warmed the caches
        for size in SIZES:
            del call[size][0]
    return samples


def _lib_describe(conf_dir):
    start = time.perf_counter()
    Configuration(conf_dir).describe()
    return time.perf_counter() - start


def _lib_sweep(conf_dir):
    conf = Configuration(conf_dir)
    start = time.perf_counter()
    with conf.locked():
        freed = allocator.sweep(conf)
    seconds = time.perf_counter() - start
    if freed:
        raise RuntimeError(f"sweep freed {freed} live holders in {conf_dir}")
    return seconds


def exponent(small, large, size_small, size_large):
    """The power p with time ~ CPUs**p between two sizes."""
    return math.log(large / small) / math.log(size_large / size_small)


def _report(result, samples, commands):
    for call, by_size in samples.items():
        med = {size: common.median(values) for size, values in by_size.items()}
        largest = med[SIZES[-1]]
        result.row(f"{call}: " + " | ".join(str(s) for s in SIZES) + " CPUs",
                   " | ".join(common.ms(med[size]) for size in SIZES),
                   f"4096: < {TARGET_SECONDS * 1000:.0f} ms", largest < TARGET_SECONDS)
        if call.startswith("lib"):
            power = exponent(med[SIZES[1]], med[SIZES[2]], SIZES[1], SIZES[2])
            result.row(f"{call}: growth exponent 512 -> 4096", f"{power:.2f}",
                       f"<= {TARGET_EXPONENT} (linear)", power <= TARGET_EXPONENT)
    for name in ("reconcile", "check"):
        if name not in commands:
            result.row(f"cli {name}", f"not available: kcm_hook.{name} is not on this "
                                      "branch yet")
