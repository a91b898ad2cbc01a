"""Benchmark 3: N prestart hooks at once, N = 1, 8, 64.

Two setups. "fake 512": a sysfs of 512 CPUs (256 cores of 2 threads; 128
exclusive dataplane cpusets) and a fake cgroup tree, since this machine's
cgroups cannot take CPUs it lacks; the holders are real `sleep` processes
(their /proc stat is the kernel's). "host": this machine's topology and real
cpuset cgroups, one per holder, placed in the shared infra pool. Each round
starts N hook processes together; throughput is N over the time until the
last exits. The hooks are kcm-hook with the lock timed (bench/timed_hook.py).
"""

import json
import os
import subprocess
import time
import uuid

from bench import common
from kcm_hook import allocator, layout, topology
from kcm_hook.pools import Configuration
from tests.conftest import make_sysfs
from tests.fakeproc import FakeHost

TITLE = "N parallel prestarts: throughput and lock hold time"
SIZES = [1, 8, 64]
TARGET_P99 = 0.005
TIMED_HOOK = os.path.join(common.REPO, "bench", "timed_hook.py")
CPUSET_V1 = "/sys/fs/cgroup/cpuset"


class RealProcessHost(FakeHost):
    """A FakeHost whose processes are real: each stat is the kernel's own."""

    def set_start(self, pid, start):
        path = os.path.join(self.proc, str(pid), "stat")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(f"/proc/{pid}/stat", path)


class Holders:
    """max(SIZES) sleeping processes to be the containers' init processes."""

    def __init__(self, count):
        self.procs = [subprocess.Popen(["sleep", "3600"]) for _ in range(count)]
        self.pids = [p.pid for p in self.procs]

    def stop(self):
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()


class RealCgroups:
    """A cpuset cgroup (v1) of its own for each holder, removed afterwards."""

    def __init__(self, pids):
        self.parent = os.path.join(CPUSET_V1, f"kcm-bench-{uuid.uuid4().hex[:8]}")
        self.children = []
        self._make(self.parent)
        for index, pid in enumerate(pids):
            child = os.path.join(self.parent, f"p{index}")
            self._make(child)
            _write(os.path.join(child, "cgroup.procs"), str(pid))
            self.children.append(child)

    @staticmethod
    def _make(path):
        os.mkdir(path)
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(os.path.join(os.path.dirname(path), name)) as f:
                _write(os.path.join(path, name), f.read().strip())

    def remove(self, holders):
        holders.stop()  # a cgroup with tasks cannot be removed
        for path in self.children + [self.parent]:
            try:
                os.rmdir(path)
            except OSError:
                pass


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def run(work, runs):
    result = common.Result(3, TITLE)
    python = common.hook_python()
    result.raw = {"fake 512": _fake_setup(work, python, runs)}
    if os.path.exists(os.path.join(CPUSET_V1, "cpuset.cpus")):
        result.raw["host"] = _host_setup(work, python, runs)
    else:
        result.notes.append("host setup not run: needs the cgroup v1 cpuset controller")
    for setup, figures in result.raw.items():
        _report(result, setup, figures)
    return result


def _fake_setup(work, python, runs):
    root = os.path.join(work, "fake")
    cpus = {cpu: (0, cpu % 256) for cpu in range(512)}
    sysfs = make_sysfs(os.path.join(root, "sys"), cpus)
    conf_dir = os.path.join(root, "kcm")
    layout.init(conf_dir, topology.discover(sysfs), 128, 64)
    host = RealProcessHost(os.path.join(root, "host"))
    holders = Holders(max(SIZES))
    try:
        for index, pid in enumerate(holders.pids):
            host.spawn(pid, f"/c{index}")
        env = {"KCM_PROCFS": host.proc, "KCM_SYSFS": sysfs}
        return _measure(python, conf_dir, holders.pids, "dataplane", env, runs)
    finally:
        holders.stop()


def _host_setup(work, python, runs):
    conf_dir = common.host_conf(work)
    holders = Holders(max(SIZES))
    cgroups = None
    try:
        cgroups = RealCgroups(holders.pids)
        return _measure(python, conf_dir, holders.pids, "infra", {}, runs)
    finally:
        if cgroups is not None:
            cgroups.remove(holders)
        else:
            holders.stop()


def _measure(python, conf_dir, pids, pool, extra_env, runs):
    env = common.hook_environ()
    env.update(extra_env)
    argv = [python, TIMED_HOOK, "prestart", f"--conf-dir={conf_dir}"]
    figures = {n: {"throughput": [], "busy": [], "cpu": [], "wait": [], "hold": [],
                   "overlaps": 0, "failures": []} for n in SIZES}
    _round(argv, env, conf_dir, pids[:1], pool, "warm")
    for index, n in common.rounds(SIZES, runs):
        before = _cpu_ticks()
        seconds, locks, failures = _round(argv, env, conf_dir, pids[:n], pool, index)
        entry = figures[n]
        entry["cpu"].append(_cpu_busy(before, _cpu_ticks()))
        entry["throughput"].append(n / seconds)
        entry["busy"].append(sum(lock["hold"] for lock in locks) / seconds)
        entry["wait"] += [lock["wait"] for lock in locks]
        entry["hold"] += [lock["hold"] for lock in locks]
        entry["overlaps"] += _overlaps(locks)
        entry["failures"] += failures
    return figures


def _round(argv, env, conf_dir, pids, pool, tag):
    """Start one prestart per pid at once; return (seconds, lock timings, failures)."""
    ids = [f"r{tag}-{len(pids)}-{index}" for index in range(len(pids))]
    states = [json.dumps({"ociVersion": "1.0.2", "id": cid, "pid": pid, "bundle": "/",
                          "annotations": {"kcm.pool": pool}}).encode()
              for cid, pid in zip(ids, pids)]
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in pids]
    # Every state goes in before any output is awaited: a hook reads its state
    # first, so feeding them one by one would run the hooks one by one. Each
    # state and each output fit in a pipe's buffer.
    for proc, state in zip(procs, states):
        proc.stdin.write(state)
        proc.stdin.close()
    outputs = [(proc.stdout.read(), proc.stderr.read()) for proc in procs]
    for proc in procs:
        proc.wait()
    seconds = time.perf_counter() - start

    locks, failures = [], []
    for proc, (out, err) in zip(procs, outputs):
        if proc.returncode != 0:
            failures.append(err.decode(errors="replace").strip())
        locks += [json.loads(line) for line in out.decode().splitlines()]
    _release(conf_dir, ids)
    return seconds, locks, failures


def _cpu_ticks():
    """(busy, total) clock ticks of all CPUs so far, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


def _cpu_busy(before, after):
    """The fraction of the machine's CPU time that was busy between two readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def _release(conf_dir, ids):
    conf = Configuration(conf_dir)
    with conf.locked():
        for cid in ids:
            allocator.release(conf, container=cid)


def _growth(throughputs, n):
    """(target, met) for throughput at N=n: it grows from N=1, then does not collapse.

    Past the point where the lock or the CPUs are saturated (the row shows how
    busy both were) more parallel hooks cannot add throughput.
    """
    index = SIZES.index(n)
    if index == 0:
        return "", None
    if index == 1:
        return "> N=1", throughputs[n] > throughputs[SIZES[0]]
    previous = SIZES[index - 1]
    met = throughputs[n] >= 0.9 * throughputs[previous]
    return f">= 0.9 x N={previous}", met


def _overlaps(locks):
    """How many lock holds began before the previous one ended: 0 if the lock works."""
    ordered = sorted(locks, key=lambda lock: lock["acquired"])
    return sum(1 for a, b in zip(ordered, ordered[1:]) if b["acquired"] < a["released"])


def _report(result, setup, figures):
    throughputs = {n: common.median(figures[n]["throughput"]) for n in SIZES}
    for n in SIZES:
        entry = figures[n]
        p99 = common.percentile(entry["hold"], 99)
        target, met = _growth(throughputs, n)
        lock, cpu = (common.median(entry[key]) * 100 for key in ("busy", "cpu"))
        result.row(f"{setup}, N={n}: allocs/s | lock, CPUs busy",
                   f"{throughputs[n]:.0f} | {lock:.0f} %, {cpu:.0f} %", target, met)
        result.row(f"{setup}, N={n}: lock hold p50 | p99",
                   f"{common.ms(common.median(entry['hold']))} | {common.ms(p99)}",
                   "p99 < 5 ms", p99 < TARGET_P99)
        result.row(f"{setup}, N={n}: lock wait p50 | p99",
                   f"{common.ms(common.median(entry['wait']))} | "
                   f"{common.ms(common.percentile(entry['wait'], 99))}")
        if entry["failures"] or entry["overlaps"]:
            result.row(f"{setup}, N={n}: FAILED hooks | overlapping holds",
                       f"{len(entry['failures'])} | {entry['overlaps']}")
            result.notes.extend(entry["failures"][:1])
