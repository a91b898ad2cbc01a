"""Records compare, print and (when frozen) hash as the dataclasses they replace."""

import pytest

from kcm_hook.pools import CpuSet, Holder
from kcm_hook.topology import Core, Topology


def test_records_compare_by_fields_and_show_them():
    assert Holder(1, 2, "infra", "0") == Holder(1, 2, "infra", "0", None)
    assert Holder(1, 2, "infra", "0") != Holder(1, 3, "infra", "0")
    assert CpuSet("0") != Holder(1, 2, "infra", "0")
    assert repr(CpuSet("4,12", [7])) == "CpuSet(cpus='4,12', tasks=[7])"
    with pytest.raises(TypeError):
        hash(CpuSet("0"))


def test_a_core_is_frozen_and_hashable():
    core = Core(package=0, core_id=3, cpus=(3, 11), node=0, isolated=False)

    assert core == Core(0, 3, (3, 11), 0, False)
    assert {core: 1}[Core(0, 3, (3, 11), 0, False)] == 1
    with pytest.raises(AttributeError, match="frozen"):
        core.node = 1
    assert Topology([core]).cpus == [3, 11]
    assert repr(core) == ("Core(package=0, core_id=3, cpus=(3, 11), node=0, "
                          "isolated=False)")
