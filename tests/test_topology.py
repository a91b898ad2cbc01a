from kcm_hook import topology
from tests.conftest import sixteen_cpus


def cpus_by_core(topo):
    return [core.cpus for core in topo.cores]


def test_sixteen_cpus_with_siblings_n_and_n_plus_8(sysfs):
    topo = topology.discover(sysfs(sixteen_cpus()))

    assert cpus_by_core(topo) == [(n, n + 8) for n in range(8)]
    assert topo.cpus == list(range(16))


def test_two_sockets_with_repeating_core_ids_are_distinct_cores(sysfs):
    # cpu 0-3 on package 0 and 4-7 on package 1, core ids 0-3 on both.
    cpus = {cpu: (cpu // 4, cpu % 4) for cpu in range(8)}
    topo = topology.discover(sysfs(cpus, nodes={0: range(4), 1: range(4, 8)}))

    assert len(topo.cores) == 8
    assert [(c.package, c.core_id, c.node) for c in topo.cores][3:5] == [(0, 3, 0),
                                                                         (1, 0, 1)]


def test_siblings_numbered_side_by_side(sysfs):
    cpus = {cpu: (0, cpu // 2) for cpu in range(8)}
    topo = topology.discover(sysfs(cpus))

    assert cpus_by_core(topo) == [(0, 1), (2, 3), (4, 5), (6, 7)]


def test_offline_cpu_is_left_out_and_its_sibling_kept(sysfs):
    topo = topology.discover(sysfs(sixteen_cpus(), offline=[15, 6, 14]))

    assert 15 not in topo.cpus
    assert cpus_by_core(topo)[6:] == [(7,)]
    assert all(6 not in core.cpus for core in topo.cores)


def test_isolated_cores_are_marked(sysfs):
    topo = topology.discover(sysfs(sixteen_cpus(), isolated=[2, 10, 3]))

    assert [c.cpus for c in topo.cores if c.isolated] == [(2, 10)]


def test_this_machine():
    topo = topology.discover("/sys")

    assert topo.cpus
    assert sum(len(core.cpus) for core in topo.cores) == len(topo.cpus)
