import io
import json
import multiprocessing
import os

import pytest

from kcm_hook import hooks
from kcm_hook.cli import main
from kcm_hook.errors import CgroupError, LockTimeout, PoolError, PoolExhausted
from kcm_hook.pools import Configuration
from tests.fakeproc import FakeHost


@pytest.fixture
def host(tmp_path, monkeypatch):
    fake = FakeHost(str(tmp_path / "host"), 1)
    monkeypatch.setenv("KCM_PROCFS", fake.proc)
    return fake


def stdin(container_id, pid=None, pool=None, bundle="/nonexistent"):
    doc = {"ociVersion": "1.0.2", "id": container_id, "bundle": bundle}
    if pid is not None:
        doc["pid"] = pid
    if pool is not None:
        doc["annotations"] = {"kcm.pool": pool}
    return io.BytesIO(json.dumps(doc).encode())


def tasks(conf_dir):
    return {(name, cpus): c.tasks for name, p in Configuration(conf_dir).pools().items()
            for cpus, c in p.cpusets.items() if c.tasks}


def test_prestart_confines_and_records_then_poststop_frees(conf_dir, host):
    host.spawn(100, "/c1")

    placed = hooks.prestart(conf_dir, stdin("c1", 100, "dataplane"))
    assert placed == ("dataplane", "4,12")

    assert host.cpus_of("/c1") == "4,12"
    assert tasks(conf_dir) == {("dataplane", "4,12"): [100]}
    [holder] = Configuration(conf_dir).holders()
    assert (holder.container, holder.start) == ("c1", 1000)

    hooks.poststop(conf_dir, stdin("c1"))
    assert tasks(conf_dir) == {}
    assert Configuration(conf_dir).holders() == []


def test_unannotated_container_goes_to_infra(conf_dir, host, tmp_path):
    host.spawn(100, "/c1")
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")

    assert hooks.prestart(conf_dir, stdin("c1", 100, bundle=str(bundle))) == \
        ("infra", "0-2,8-10")


def test_exclusive_pool_hands_out_each_cpuset_once(conf_dir, host):
    for pid in range(100, 104):
        host.spawn(pid, f"/c{pid}")
        hooks.prestart(conf_dir, stdin(f"c{pid}", pid, "dataplane"))
    host.spawn(200, "/late")

    with pytest.raises(PoolExhausted, match="4 of 4 exclusive cpusets in use"):
        hooks.prestart(conf_dir, stdin("late", 200, "dataplane"))

    assert sorted(host.cpus_of(f"/c{pid}") for pid in range(100, 104)) == \
        ["4,12", "5,13", "6,14", "7,15"]
    assert host.cpus_of("/late") == "0-15"


def test_exhausted_pool_reclaims_a_dead_holder_first(conf_dir, host):
    for pid in range(100, 104):
        host.spawn(pid, f"/c{pid}")
        hooks.prestart(conf_dir, stdin(f"c{pid}", pid, "dataplane"))
    host.kill(102)
    host.spawn(200, "/late")

    assert hooks.prestart(conf_dir, stdin("late", 200, "dataplane"))[1] == "6,14"


def test_pid_reused_by_another_process_does_not_hold(conf_dir, host):
    for pid in range(100, 104):
        host.spawn(pid, f"/c{pid}")
        hooks.prestart(conf_dir, stdin(f"c{pid}", pid, "dataplane"))
    host.set_start(101, 5555)
    host.spawn(200, "/late")

    assert hooks.prestart(conf_dir, stdin("late", 200, "dataplane"))[1] == "5,13"


def test_shared_pool_takes_every_container(conf_dir, host):
    for pid in range(100, 110):
        host.spawn(pid, f"/c{pid}")
        hooks.prestart(conf_dir, stdin(f"c{pid}", pid, "controlplane"))

    assert tasks(conf_dir) == {("controlplane", "3,11"): list(range(100, 110))}


def test_prestart_twice_for_one_container_keeps_one_cpuset(conf_dir, host):
    host.spawn(100, "/c1")
    hooks.prestart(conf_dir, stdin("c1", 100, "dataplane"))
    hooks.prestart(conf_dir, stdin("c1", 100, "dataplane"))

    assert tasks(conf_dir) == {("dataplane", "4,12"): [100]}


def test_poststop_of_unknown_container_is_fine_and_idempotent(conf_dir, host):
    host.spawn(100, "/c1")
    hooks.prestart(conf_dir, stdin("c1", 100, "dataplane"))

    assert hooks.poststop(conf_dir, stdin("other")) == []
    hooks.poststop(conf_dir, stdin("c1"))
    assert hooks.poststop(conf_dir, stdin("c1")) == []
    assert tasks(conf_dir) == {}


def test_unknown_pool_names_the_pools(conf_dir, host):
    host.spawn(100, "/c1")
    with pytest.raises(PoolError, match="'gold' does not exist.*controlplane, "
                                        "dataplane, infra"):
        hooks.prestart(conf_dir, stdin("c1", 100, "gold"))


def test_failed_cgroup_write_records_nothing(conf_dir, host):
    host.spawn(100, "/c1")
    # Root ignores file modes: a directory in place of the file makes open() fail.
    os.unlink(host.cgroup_root + "/c1/cpuset.cpus")
    os.mkdir(host.cgroup_root + "/c1/cpuset.cpus")

    with pytest.raises(CgroupError, match="cannot write '4,12'"):
        hooks.prestart(conf_dir, stdin("c1", 100, "dataplane"))
    assert tasks(conf_dir) == {}
    assert Configuration(conf_dir).holders() == []


def test_cli_prestart_failure_is_one_line(conf_dir, host, monkeypatch, capsys):
    host.spawn(100, "/c1")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(stdin("c1", 100, "gold")))

    assert main(["prestart", f"--conf-dir={conf_dir}"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("kcm-hook: error: pool 'gold'")


def _hold_lock(conf_dir, ready, release):
    with Configuration(conf_dir).locked():
        ready.set()
        release.wait(30)


def test_lock_timeout_ends_in_a_clear_error(conf_dir, host, monkeypatch):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(conf_dir, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        monkeypatch.setenv("KCM_LOCK_TIMEOUT", "0.2")
        host.spawn(100, "/c1")
        with pytest.raises(LockTimeout, match="timed out after 0.2 s waiting for"):
            hooks.prestart(conf_dir, stdin("c1", 100, "dataplane"))
    finally:
        release.set()
        holder.join()
    assert tasks(conf_dir) == {}


def test_describe_shows_pools_cpusets_tasks_and_containers(conf_dir, host, capsys):
    host.spawn(100, "/c1")
    hooks.prestart(conf_dir, stdin("c1", 100, "dataplane"))

    assert main(["describe", f"--conf-dir={conf_dir}"]) == 0

    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == conf_dir
    assert sorted(doc["pools"]) == ["controlplane", "dataplane", "infra"]
    assert doc["pools"]["dataplane"]["exclusive"] is True
    assert doc["pools"]["dataplane"]["cpuLists"]["4,12"] == {
        "cpus": "4,12", "tasks": [100], "containers": ["c1"]}
    assert doc["pools"]["infra"]["cpuLists"]["0-2,8-10"]["tasks"] == []
