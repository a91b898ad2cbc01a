import os

import pytest

from kcm_hook import cgroups
from kcm_hook.errors import CgroupError
from tests.conftest import write
from tests.fakeproc import FakeHost


@pytest.fixture
def host(tmp_path, monkeypatch):
    def factory(version):
        fake = FakeHost(str(tmp_path), version)
        monkeypatch.setenv("KCM_PROCFS", fake.proc)
        return fake
    return factory


def test_v1_resolves_the_cpuset_hierarchy_on_a_hybrid_host(host):
    fake = host(1)
    directory = fake.spawn(42, "/docker/abc")

    cgroup = cgroups.cgroup_of(42)

    assert (cgroup.path, cgroup.version) == (directory, 1)


def test_v1_confine_fills_empty_mems_from_the_parent(host):
    fake = host(1)
    directory = fake.spawn(42, "/pod/c1", mems="")
    write(os.path.join(fake.cgroup_root, "pod", "cpuset.mems"), "0-1\n")

    cgroups.cgroup_of(42).confine("3,11")

    assert fake.cpus_of("/pod/c1") == "3,11"
    with open(os.path.join(directory, "cpuset.mems")) as f:
        assert f.read() == "0-1"


def test_v2_resolves_the_unified_hierarchy(host):
    fake = host(2)
    directory = fake.spawn(7, "/system.slice/ctr.scope")

    cgroup = cgroups.cgroup_of(7)
    cgroup.confine("1")

    assert (cgroup.path, cgroup.version) == (directory, 2)
    assert fake.cpus_of("/system.slice/ctr.scope") == "1"


def test_v2_without_the_cpuset_controller_is_an_error(host):
    fake = host(2)
    fake.spawn(7, "/ctr")
    os.unlink(os.path.join(fake.cgroup_root, "ctr", "cpuset.cpus"))

    with pytest.raises(CgroupError, match="no cpuset cgroup"):
        cgroups.cgroup_of(7)


def test_mount_showing_part_of_the_hierarchy(host, tmp_path):
    fake = host(1)
    mountinfo = os.path.join(fake.proc, "self", "mountinfo")
    mount_dir = str(tmp_path / "inner")
    write(mountinfo, f"30 25 0:27 /kubepods {mount_dir} rw - cgroup cgroup rw,cpuset\n")
    write(os.path.join(fake.proc, "9", "cgroup"), "4:cpuset:/kubepods/pod1/c\n")

    assert cgroups.cgroup_of(9).path == os.path.join(mount_dir, "pod1", "c")


def test_path_escaping_the_mount_is_refused(host):
    fake = host(1)
    write(os.path.join(fake.proc, "9", "cgroup"), "4:cpuset:/../../etc\n")

    with pytest.raises(CgroupError, match="escapes"):
        cgroups.cgroup_of(9)


def test_missing_process_is_named(host):
    host(1)
    with pytest.raises(CgroupError, match="process 4242 does not exist"):
        cgroups.cgroup_of(4242)


def test_empty_cpulist_never_reaches_a_cgroup(host):
    fake = host(1)
    fake.spawn(42, "/c")

    with pytest.raises(CgroupError, match="empty cpulist"):
        cgroups.cgroup_of(42).confine("")
    assert fake.cpus_of("/c") == "0-15"


def test_a_process_in_the_root_cpuset_is_refused(host):
    # The root cgroup holds every host process: confining it would pin the host.
    fake = host(1)
    write(os.path.join(fake.proc, "9", "cgroup"), "4:cpuset:/\n0::/\n")

    with pytest.raises(CgroupError, match="process 9 is in the root cpuset cgroup"):
        cgroups.cgroup_of(9)
    assert fake.cpus_of("/") == "0-15"
