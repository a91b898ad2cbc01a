import os

import pytest

from kcm_hook import layout, topology
from kcm_hook.cli import main
from kcm_hook.errors import ConfigError, TopologyError, UsageError
from kcm_hook.pools import Configuration
from tests.conftest import sixteen_cpus


def tree(path):
    """Every file under `path` with its content, relative paths as keys."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full) as f:
                found[os.path.relpath(full, path)] = f.read()
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.listdir(full):
                found[os.path.relpath(full, path) + "/"] = None
    return found


def test_defaults_on_sixteen_cpus_give_exactly_the_documented_tree(sysfs, tmp_path):
    sysfs(sixteen_cpus())
    conf_dir = str(tmp_path / "kcm")

    assert main(["init", f"--conf-dir={conf_dir}"]) == 0

    assert tree(conf_dir) == {
        "lock": "",
        "holders.json": '{\n "holders": []\n}\n',
        "pools/dataplane/exclusive": "1",
        "pools/dataplane/4,12/tasks": "",
        "pools/dataplane/5,13/tasks": "",
        "pools/dataplane/6,14/tasks": "",
        "pools/dataplane/7,15/tasks": "",
        "pools/controlplane/exclusive": "0",
        "pools/controlplane/3,11/tasks": "",
        "pools/infra/exclusive": "0",
        "pools/infra/0-2,8-10/tasks": "",
    }


def test_zero_controlplane_cores_leaves_the_pool_without_cpusets(sysfs, tmp_path):
    topo = topology.discover(sysfs(sixteen_cpus()))

    plan = layout.plan(topo, 2, 0)

    assert plan == {"dataplane": (True, ["6,14", "7,15"]),
                    "controlplane": (False, []),
                    "infra": (False, ["0-5,8-13"])}


def test_two_sockets_take_the_highest_cores_of_either_socket(sysfs):
    cpus = {cpu: (cpu // 4, cpu % 4) for cpu in range(8)}
    topo = topology.discover(sysfs(cpus))

    assert layout.plan(topo, 2, 1) == {"dataplane": (True, ["6", "7"]),
                                       "controlplane": (False, ["5"]),
                                       "infra": (False, ["0-4"])}


def test_isolated_cores_go_to_dataplane_first(sysfs):
    topo = topology.discover(sysfs(sixteen_cpus(), isolated=[1, 9, 2, 10]))

    plan = layout.plan(topo, 3, 1)

    assert plan["dataplane"] == (True, ["1,9", "2,10", "7,15"])
    assert plan["controlplane"] == (False, ["6,14"])
    assert plan["infra"] == (False, ["0,3-5,8,11-13"])


def test_offline_cpus_are_never_handed_out(sysfs):
    topo = topology.discover(sysfs(sixteen_cpus(), offline=[15]))

    plan = layout.plan(topo, 1, 1)

    assert plan["dataplane"] == (True, ["7"])
    assert "15" not in str(plan)


def test_too_few_cores_is_refused_and_writes_nothing(sysfs, tmp_path, capsys):
    sysfs(sixteen_cpus())
    conf_dir = tmp_path / "kcm"

    assert main(["init", f"--conf-dir={conf_dir}", "--num-dp-cores=6",
                 "--num-cp-cores=2"]) == 1

    err = capsys.readouterr().err
    assert "asked for 6 dataplane + 2 controlplane" in err
    assert "(9 physical cores), but this machine has 8 online" in err
    assert not conf_dir.exists()


@pytest.mark.parametrize("dp, cp", [(0, 1), (-1, 0), (1, -1)])
def test_core_counts_out_of_range_are_usage_errors(sysfs, dp, cp):
    topo = topology.discover(sysfs(sixteen_cpus()))
    with pytest.raises(UsageError):
        layout.plan(topo, dp, cp)


def test_same_layout_again_keeps_tasks(conf_dir):
    conf = Configuration(conf_dir)
    with conf.locked():
        cpuset = conf.pool("infra").cpusets["0-2,8-10"]
        cpuset.tasks = [1]
        conf.write_tasks("infra", cpuset)

    _, changed = layout.init(conf_dir, topology.discover(), 4, 1)

    assert not changed
    assert conf.pool("infra").cpusets["0-2,8-10"].tasks == [1]


def test_different_layout_refused_without_overwrite(conf_dir):
    before = tree(conf_dir)

    with pytest.raises(ConfigError, match="different layout.*--overwrite"):
        layout.init(conf_dir, topology.discover(), 2, 1)

    assert tree(conf_dir) == before


def test_overwrite_refused_while_a_task_is_registered(conf_dir):
    conf = Configuration(conf_dir)
    with conf.locked():
        cpuset = conf.pool("dataplane").cpusets["7,15"]
        cpuset.tasks = [os.getpid()]
        conf.write_tasks("dataplane", cpuset)
    before = tree(conf_dir)

    with pytest.raises(ConfigError, match="still held.*dataplane/7,15"):
        layout.init(conf_dir, topology.discover(), 2, 1, overwrite=True)

    assert tree(conf_dir) == before


def test_overwrite_replaces_an_idle_layout(conf_dir):
    _, changed = layout.init(conf_dir, topology.discover(), 2, 1, overwrite=True)

    assert changed
    assert list(Configuration(conf_dir).pool("dataplane").cpusets) == ["6,14", "7,15"]
    assert not [n for n in os.listdir(conf_dir) if n.startswith(".")]


def test_too_few_cores_is_a_topology_error(sysfs):
    topo = topology.discover(sysfs({0: (0, 0), 1: (0, 1)}))
    with pytest.raises(TopologyError, match="has 2 online"):
        layout.plan(topo, 2, 0)


def test_init_under_a_strict_umask_still_writes_a_tree_the_hooks_can_read(sysfs,
                                                                          tmp_path):
    sysfs(sixteen_cpus())
    conf_dir = tmp_path / "kcm"
    old = os.umask(0o077)
    try:
        layout.init(str(conf_dir), topology.discover(), 4, 1)
    finally:
        os.umask(old)

    modes = {oct(os.stat(os.path.join(d, n)).st_mode & 0o777)
             for d, dirs, _ in os.walk(conf_dir) for n in dirs}
    assert modes == {"0o755"}
