"""64 hooks at once, for 64 real processes in cpusets of their own."""

import os


from integration.cpusets import allowed_cpus, oci_state, run_hooks
from kcm_hook.pools import Configuration

COUNT = 64


def all_tasks(conf_dir):
    return {(name, cpus): cpuset.tasks
            for name, pool in Configuration(conf_dir).pools().items()
            for cpus, cpuset in pool.cpusets.items()}


def tasks_file_contents(conf_dir):
    """The distinct contents of every tasks file on disk."""
    contents = set()
    for directory, _, files in os.walk(os.path.join(conf_dir, "pools")):
        if "tasks" in files:
            with open(os.path.join(directory, "tasks")) as f:
                contents.add(f.read())
    return contents


def test_64_prestarts_for_one_dataplane_cpuset_admit_exactly_one(
        host_conf, processes, bundle):
    pids = processes.spawn(COUNT)
    [dataplane] = Configuration(host_conf).pool("dataplane").cpusets
    states = [oci_state(f"c{pid}", pid, bundle, "dataplane") for pid in pids]

    results = run_hooks("prestart", host_conf, states)

    admitted = [pid for pid, (code, _, _) in zip(pids, results) if code == 0]
    refused = [err for code, _, err in results if code != 0]
    assert len(admitted) == 1, refused[:3]
    assert len(refused) == COUNT - 1
    for code, out, err in results:
        assert out == ""
        if code != 0:
            assert code == 1
            assert err.count("\n") == 1 and "Traceback" not in err
            assert ("pool 'dataplane' is exhausted: 1 of 1 exclusive cpusets in use"
                    in err)
    [winner] = admitted
    assert all_tasks(host_conf)[("dataplane", dataplane)] == [winner]
    assert allowed_cpus(winner) == dataplane
    for pid in pids:
        if pid != winner:
            assert allowed_cpus(pid) == processes.cgroup_cpus(pid) == "0-1"

    results = run_hooks("poststop", host_conf, states)

    assert [code for code, _, _ in results] == [0] * COUNT
    assert all(tasks == [] for tasks in all_tasks(host_conf).values())
    assert Configuration(host_conf).holders() == []
    assert tasks_file_contents(host_conf) == {""}


def test_64_prestarts_into_the_shared_pool_are_all_recorded(
        host_conf, processes, bundle):
    pids = processes.spawn(COUNT)
    [infra] = Configuration(host_conf).pool("infra").cpusets
    states = [oci_state(f"c{pid}", pid, bundle, "infra") for pid in pids]

    results = run_hooks("prestart", host_conf, states)

    assert [(code, out, err) for code, out, err in results
            if code != 0 or out or err] == []
    assert sorted(all_tasks(host_conf)[("infra", infra)]) == sorted(pids)
    holders = Configuration(host_conf).holders()
    assert sorted((h.container, h.pid) for h in holders) == sorted(
        (f"c{pid}", pid) for pid in pids)
    assert {allowed_cpus(pid) for pid in pids} == {infra}

    results = run_hooks("poststop", host_conf, states)

    assert [code for code, _, _ in results] == [0] * COUNT
    assert all(tasks == [] for tasks in all_tasks(host_conf).values())
    assert Configuration(host_conf).holders() == []
    assert tasks_file_contents(host_conf) == {""}
