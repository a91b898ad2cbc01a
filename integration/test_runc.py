"""Real runc containers placed by kcm-hook's prestart and poststop hooks."""

import json
import subprocess

from integration.runc import KCM_HOOK, kcm_hooks, make_bundle, read_when
from kcm_hook.pools import Configuration

SHOW_CPUS = ["sh", "-c", "grep Cpus_allowed_list /proc/self/status"]
SHOW_AND_WAIT = ["sh", "-c", "grep Cpus_allowed_list /proc/self/status; exec sleep 600"]


def pool_cpus(conf_dir, pool):
    return list(Configuration(conf_dir).pool(pool).cpusets)


def describe(conf_dir):
    out = subprocess.run([KCM_HOOK, "describe", f"--conf-dir={conf_dir}"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def held_tasks(conf_dir):
    return {(name, cpus): entry["tasks"]
            for name, pool in describe(conf_dir)["pools"].items()
            for cpus, entry in pool["cpuLists"].items() if entry["tasks"]}


def test_dataplane_container_sees_only_its_core(runc, host_conf, tmp_path):
    [dataplane] = pool_cpus(host_conf, "dataplane")
    bundle = make_bundle(str(tmp_path / "b"), SHOW_CPUS,
                         annotations={"kcm.pool": "dataplane"},
                         hooks=kcm_hooks(host_conf))

    result = runc.run("dp", bundle)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", dataplane]
    assert held_tasks(host_conf) == {}


def test_container_without_annotation_lands_on_infra(runc, host_conf, tmp_path):
    [infra] = pool_cpus(host_conf, "infra")
    bundle = make_bundle(str(tmp_path / "b"), SHOW_CPUS, hooks=kcm_hooks(host_conf))

    result = runc.run("plain", bundle)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", infra]


def test_pool_from_process_environment(runc, host_conf, tmp_path):
    [dataplane] = pool_cpus(host_conf, "dataplane")
    bundle = make_bundle(str(tmp_path / "b"), SHOW_CPUS, env=["KCM_POOL=dataplane"],
                         hooks=kcm_hooks(host_conf))

    result = runc.run("env", bundle)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", dataplane]


def test_second_dataplane_container_refused_until_first_is_deleted(runc, host_conf,
                                                                    tmp_path):
    [dataplane] = pool_cpus(host_conf, "dataplane")
    hooks = kcm_hooks(host_conf)
    first = make_bundle(str(tmp_path / "first"), SHOW_AND_WAIT,
                        annotations={"kcm.pool": "dataplane"}, hooks=hooks)
    second = make_bundle(str(tmp_path / "second"), SHOW_CPUS,
                         annotations={"kcm.pool": "dataplane"}, hooks=hooks)

    assert runc.run_detached("first", first, str(tmp_path / "first.log")) == 0
    read_when(str(tmp_path / "first.log"), f"Cpus_allowed_list:\t{dataplane}")
    init_pid = runc.state("first")["pid"]
    assert held_tasks(host_conf) == {("dataplane", dataplane): [init_pid]}
    assert describe(host_conf)["pools"]["dataplane"]["cpuLists"][dataplane][
        "containers"] == ["first"]

    refused = runc.run("second", second)
    assert refused.returncode != 0
    assert ("pool 'dataplane' is exhausted: 1 of 1 exclusive cpusets in use"
            in refused.stderr)
    assert "Traceback" not in refused.stderr
    assert held_tasks(host_conf) == {("dataplane", dataplane): [init_pid]}

    deleted = runc.delete("first")
    assert deleted.returncode == 0, deleted.stderr
    assert held_tasks(host_conf) == {}

    runc.delete("second")
    accepted = runc.run("second", second)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.split() == ["Cpus_allowed_list:", dataplane]
    assert held_tasks(host_conf) == {}


def test_unknown_pool_is_refused_with_the_pools_that_exist(runc, host_conf, tmp_path):
    bundle = make_bundle(str(tmp_path / "b"), SHOW_CPUS,
                         annotations={"kcm.pool": "gold"}, hooks=kcm_hooks(host_conf))

    result = runc.run("gold", bundle)

    assert result.returncode != 0
    assert "pool 'gold' does not exist" in result.stderr
    assert "controlplane, dataplane, infra" in result.stderr
    assert held_tasks(host_conf) == {}
