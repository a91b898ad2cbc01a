"""Random interleavings of hooks, isolate, reconcile and process deaths.

A fake 128-core machine (256 CPUs) and fake processes; after every step the
files must parse, no exclusive cpuset may have two live holders, every live
holder must hold exactly one cpuset, the cgroup of each holder must be
confined to what was recorded (after a reconcile, when someone rewrote it),
and describe must agree with the files.
"""

import atexit
import io
import json
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kcm_hook import allocator, cgroups, hooks, layout, procfs, reconcile, topology
from kcm_hook.errors import KcmError
from kcm_hook.pools import Configuration
from tests.conftest import make_sysfs
from tests.fakeproc import FakeProc

CORES = 128
CONTAINERS = [f"ctr{i}" for i in range(12)]
POOLS = ["dataplane", "controlplane", "infra", "gold", "../infra"]


def machine():
    """Two threads per core: CPU c and c+128 are siblings of core c."""
    return {cpu: (0, cpu % CORES) for cpu in range(2 * CORES)}


_SYSFS = {}


def shared_sysfs():
    """The fake machine's sysfs, written once per test session (it never changes)."""
    if "root" not in _SYSFS:
        root = tempfile.mkdtemp(prefix="kcm-prop-sys-")
        atexit.register(shutil.rmtree, root, True)
        _SYSFS["root"] = make_sysfs(root, machine())
        _SYSFS["topology"] = topology.discover(root)
    return _SYSFS["root"], _SYSFS["topology"]


class PoolMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="kcm-prop-")
        self.saved_env = {k: os.environ.get(k) for k in ("KCM_PROCFS", "KCM_SYSFS")}
        self.sys, self.topology = shared_sysfs()
        self.fake = FakeProc(os.path.join(self.tmp, "fake"))
        os.environ["KCM_SYSFS"] = self.sys
        os.environ["KCM_PROCFS"] = self.fake.proc
        self.conf_dir = os.path.join(self.tmp, "kcm")
        self.bundle = os.path.join(self.tmp, "bundle")
        os.makedirs(self.bundle)
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump({"ociVersion": "1.0.2"}, f)
        self.next_pid = 100
        self.next_start = 1
        self.container_pid = {}
        self.drifted = set()  # pids whose cgroup someone else rewrote

    def teardown(self):
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.tmp, ignore_errors=True)

    def spawn(self, pid=None):
        if pid is None:
            pid, self.next_pid = self.next_pid, self.next_pid + 1
        self.next_start += 1
        return self.fake.spawn(pid, start=self.next_start)

    @initialize(num_dp=st.sampled_from([1, 3, 100]), num_cp=st.sampled_from([0, 2]))
    def init(self, num_dp, num_cp):
        layout.init(self.conf_dir, self.topology, num_dp, num_cp)

    def state(self, container, pid, pool):
        doc = {"ociVersion": "1.0.2", "id": container, "pid": pid,
               "bundle": self.bundle, "annotations": {"kcm.pool": pool}}
        return io.BytesIO(json.dumps(doc).encode())

    # -- steps

    @rule(container=st.sampled_from(CONTAINERS), pool=st.sampled_from(POOLS))
    def prestart(self, container, pool):
        pid = self.container_pid.get(container)
        if pid is None or not self.fake.alive(pid):
            pid = self.spawn()
            self.container_pid[container] = pid
        try:
            hooks.prestart(self.conf_dir, self.state(container, pid, pool))
        except KcmError:
            pass

    @rule(container=st.sampled_from(CONTAINERS))
    def poststop(self, container):
        pid = self.container_pid.pop(container, None)
        if pid is not None:
            self.fake.kill(pid)
        hooks.poststop(self.conf_dir, self.state(container, pid or 1, "infra"))

    @rule(pool=st.sampled_from(POOLS))
    def isolate(self, pool):
        # isolate forks a real child; this is the allocation it makes for it.
        pid = self.spawn()
        conf = Configuration(self.conf_dir)
        try:
            with conf.locked():
                allocator.allocate(conf, pool, pid,
                                   confine=cgroups.cgroup_of(pid).confine)
        except KcmError:
            self.fake.kill(pid)

    @rule()
    def reconcile(self):
        reconcile.sweep(Configuration(self.conf_dir))
        self.drifted.clear()

    @rule(data=st.data())
    def cgroup_is_rewritten(self, data):
        """Someone else widens a container's cpuset; reconcile must narrow it again."""
        live = sorted(p for p in self.container_pid.values() if self.fake.alive(p))
        if live:
            pid = data.draw(st.sampled_from(live))
            cpus = os.path.join(self.fake.cgroup_root, f"ctr-{pid}", "cpuset.cpus")
            with open(cpus, "w") as f:
                f.write(f"0-{2 * CORES - 1}\n")
            self.drifted.add(pid)

    @rule(data=st.data())
    def process_dies(self, data):
        if self.fake.starts:
            self.fake.kill(data.draw(st.sampled_from(sorted(self.fake.starts))))

    @rule(data=st.data())
    def pid_is_reused(self, data):
        dead = sorted(set(range(100, self.next_pid)) - set(self.fake.starts))
        if dead:
            self.spawn(data.draw(st.sampled_from(dead)))

    # -- what must hold after every step

    def files(self):
        """(tasks {(pool, cpus): [pid]}, exclusive {pool}, holders) read from disk."""
        pools_dir = os.path.join(self.conf_dir, "pools")
        tasks, exclusive = {}, set()
        for pool in os.listdir(pools_dir):
            with open(os.path.join(pools_dir, pool, "exclusive")) as f:
                if f.read().strip() == "1":
                    exclusive.add(pool)
            for entry in os.listdir(os.path.join(pools_dir, pool)):
                if entry != "exclusive":
                    with open(os.path.join(pools_dir, pool, entry, "tasks")) as f:
                        text = f.read()
                    tasks[(pool, entry)] = [int(p) for p in text.split(",") if p]
        with open(os.path.join(self.conf_dir, "holders.json")) as f:
            holders = json.load(f)["holders"]
        return tasks, exclusive, holders

    def live(self, holder):
        return procfs.is_holder(holder["pid"], holder["start"])

    @invariant()
    def pools_are_consistent(self):
        if not os.path.isdir(os.path.join(self.conf_dir, "pools")):
            return
        conf = Configuration(self.conf_dir)
        conf.pools()
        conf.holders()
        tasks, exclusive, holders = self.files()
        self.no_exclusive_cpuset_has_two_live_holders(tasks, exclusive, holders)
        self.every_live_holder_has_exactly_one_cpuset(tasks, holders)
        self.describe_agrees_with_the_files(conf, tasks, exclusive, holders)

    def no_exclusive_cpuset_has_two_live_holders(self, tasks, exclusive, holders):
        for holder in holders:
            assert (holder["pool"], holder["cpus"]) in tasks
        for (pool, cpus), pids in tasks.items():
            if pool in exclusive:
                live = [h for h in holders if (h["pool"], h["cpus"]) == (pool, cpus)
                        and h["pid"] in pids and self.live(h)]
                assert len(live) <= 1, (pool, cpus, live)

    def every_live_holder_has_exactly_one_cpuset(self, tasks, holders):
        recorded = sorted((h["pool"], h["cpus"], h["pid"]) for h in holders)
        on_disk = sorted((pool, cpus, pid) for (pool, cpus), pids in tasks.items()
                         for pid in pids)
        assert recorded == on_disk
        live = [h for h in holders if self.live(h)]
        assert len({h["pid"] for h in live}) == len(live)
        containers = [h["container"] for h in live if h["container"] is not None]
        assert len(set(containers)) == len(containers)
        for holder in live:
            if holder["pid"] not in self.drifted:
                assert self.fake.cgroup_cpus(holder["pid"]) == holder["cpus"]

    def describe_agrees_with_the_files(self, conf, tasks, exclusive, holders):
        described = conf.describe()["pools"]
        assert {(p, c): e["tasks"] for p, pool in described.items()
                for c, e in pool["cpuLists"].items()} == tasks
        assert {p for p, pool in described.items() if pool["exclusive"]} == exclusive
        containers = [c for pool in described.values()
                      for e in pool["cpuLists"].values() for c in e["containers"]]
        assert sorted(containers) == sorted(
            h["container"] for h in holders if h["container"] is not None)


PoolMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_random_interleavings_keep_the_pools_consistent = PoolMachine.TestCase
