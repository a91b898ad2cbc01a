"""isolate run in this process on this machine's CPUs: real children, real exec."""

import json
import os
import stat
import subprocess
import sys

import pytest

from kcm_hook import allocator, isolate, layout, topology
from kcm_hook.errors import (
    EXIT_CANNOT_RUN,
    EXIT_NOT_FOUND,
    AffinityError,
    CommandError,
    PoolError,
    PoolExhausted,
    StateError,
)
from kcm_hook.pools import Configuration


@pytest.fixture
def host_conf(tmp_path):
    """Pools over this machine's CPUs: dataplane gets the highest core."""
    path = str(tmp_path / "kcm")
    layout.init(path, topology.discover("/sys"), 1, 0)
    return path


def only_cpuset(conf_dir, pool):
    [cpus] = Configuration(conf_dir).pool(pool).cpusets
    return cpus


def held(conf_dir):
    conf = Configuration(conf_dir)
    tasks = {(name, cpus): cs.tasks for name, pool in conf.pools().items()
             for cpus, cs in pool.cpusets.items() if cs.tasks}
    return tasks, conf.holders()


def assert_nothing_held(conf_dir):
    assert held(conf_dir) == ({}, [])


def assert_no_child_left():
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def sh(script):
    return ["sh", "-c", script]


def test_returns_the_command_exit_status(host_conf):
    assert isolate.run(host_conf, "dataplane", sh("exit 7")) == 7
    assert isolate.run(host_conf, "dataplane", ["true"]) == 0
    assert_nothing_held(host_conf)
    assert_no_child_left()


def test_command_killed_by_signal_gives_128_plus_n(host_conf):
    assert isolate.run(host_conf, "infra", sh("kill -KILL $$")) == 128 + 9
    assert isolate.run(host_conf, "infra", sh("kill -TERM $$")) == 128 + 15
    assert_nothing_held(host_conf)


def test_command_sees_only_its_cpus_and_their_list(host_conf, tmp_path):
    dataplane = only_cpuset(host_conf, "dataplane")
    out = tmp_path / "out"

    isolate.run(host_conf, "dataplane",
                sh(f"grep Cpus_allowed_list /proc/self/status > {out}; "
                   f"echo \"assigned=$KCM_CPUS_ASSIGNED\" >> {out}"))

    assert out.read_text().split() == ["Cpus_allowed_list:", dataplane,
                                       f"assigned={dataplane}"]


def test_records_the_command_itself_with_its_start_time(host_conf, tmp_path):
    conf_dir = host_conf
    dataplane = only_cpuset(conf_dir, "dataplane")
    out = tmp_path / "out"
    tasks = os.path.join(conf_dir, "pools", "dataplane", dataplane, "tasks")
    script = (f"echo $$ > {out}; cut -d' ' -f22 /proc/$$/stat >> {out}; "
              f"cat {tasks} >> {out}; echo >> {out}; "
              f"cat {conf_dir}/holders.json >> {out}")

    isolate.run(conf_dir, "dataplane", sh(script))

    pid, start, task, *holders = out.read_text().splitlines()
    assert task == pid
    [record] = json.loads("\n".join(holders))["holders"]
    assert record == {"pid": int(pid), "start": int(start), "pool": "dataplane",
                      "cpus": dataplane, "container": None}
    assert_nothing_held(conf_dir)


def test_missing_command_is_refused_and_nothing_stays(host_conf):
    with pytest.raises(CommandError, match="'no-such-command' not found in PATH") \
            as err:
        isolate.run(host_conf, "dataplane", ["no-such-command"])
    assert err.value.exit_code == EXIT_NOT_FOUND

    with pytest.raises(CommandError, match="does not exist") as err:
        isolate.run(host_conf, "dataplane", ["/no/such/file"])
    assert err.value.exit_code == EXIT_NOT_FOUND
    assert_nothing_held(host_conf)
    assert_no_child_left()


def test_file_that_is_not_executable_gives_126(host_conf, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")

    with pytest.raises(CommandError, match="not an executable file") as err:
        isolate.run(host_conf, "dataplane", [str(script)])

    assert err.value.exit_code == EXIT_CANNOT_RUN
    assert_nothing_held(host_conf)


def test_exec_that_fails_after_allocation_frees_the_cpuset(host_conf, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(stat.S_IRWXU)

    with pytest.raises(CommandError, match="cannot run .*No such file") as err:
        isolate.run(host_conf, "dataplane", [str(script)])

    assert err.value.exit_code == EXIT_NOT_FOUND
    assert_nothing_held(host_conf)
    assert_no_child_left()


def test_unknown_or_malformed_pool_is_refused(host_conf):
    with pytest.raises(PoolError, match="pool 'gold' does not exist"):
        isolate.run(host_conf, "gold", ["true"])
    with pytest.raises(StateError, match="'../infra' from the --pool option"):
        isolate.run(host_conf, "../infra", ["true"])
    assert_nothing_held(host_conf)
    assert_no_child_left()


def test_exhausted_pool_refuses_and_leaves_no_child(host_conf, tmp_path):
    holder = subprocess.Popen(["sleep", "600"])
    try:
        conf = Configuration(host_conf)
        with conf.locked():
            allocator.allocate(conf, "dataplane", holder.pid)

        with pytest.raises(PoolExhausted):
            isolate.run(host_conf, "dataplane", ["true"])

        [record] = conf.holders()
        assert record.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert_no_child_left()


def test_shared_pool_takes_several_commands(host_conf, tmp_path):
    infra = only_cpuset(host_conf, "infra")
    out = tmp_path / "out"
    inner = [sys.executable, "-m", "kcm_hook", "isolate", f"--conf-dir={host_conf}",
             "--pool=infra", "sh", "--", "-c",
             f"cat {host_conf}/pools/infra/{infra}/tasks > {out}"]

    assert isolate.run(host_conf, "infra", inner) == 0

    assert len(out.read_text().split(",")) == 2
    assert_nothing_held(host_conf)


def test_cpus_outside_isolate_own_affinity_are_refused(tmp_path, monkeypatch, sysfs):
    from tests.conftest import sixteen_cpus

    sysfs(sixteen_cpus())
    conf_dir = str(tmp_path / "kcm16")
    layout.init(conf_dir, topology.discover(), 4, 1)
    if set(os.sched_getaffinity(0)) >= set(range(16)):
        pytest.skip("this machine has all 16 CPUs of the fake topology")

    with pytest.raises(AffinityError, match="cannot set the CPU affinity"):
        isolate.run(conf_dir, "dataplane", ["true"])

    assert_nothing_held(conf_dir)
    assert_no_child_left()
