"""CPU topology of the host, read from sysfs.

The root is /sys unless KCM_SYSFS names another tree, which is how the tests
describe machines this one is not. Files read (Documentation/ABI/stable/
sysfs-devices-system-cpu and Documentation/admin-guide/cputopology.rst):

  devices/system/cpu/online                      online CPUs
  devices/system/cpu/isolated                    CPUs given to isolcpus=
  devices/system/cpu/cpuN/topology/physical_package_id
  devices/system/cpu/cpuN/topology/core_id       repeats across packages
  devices/system/node/nodeM/cpulist              NUMA membership
"""

import os

from . import cpulist
from .errors import CpuListError, TopologyError
from .records import FrozenRecord, Record


def sysfs_root():
    return os.environ.get("KCM_SYSFS", "/sys")


class Core(FrozenRecord):
    """A physical core: its (package, core id) and its online hardware threads."""

    _fields = ("package", "core_id", "cpus", "node", "isolated")

    def __init__(self, package, core_id, cpus, node, isolated):
        self._freeze(package, core_id, cpus, node, isolated)


class Topology(Record):
    _fields = ("cores",)

    def __init__(self, cores):
        self.cores = cores  # ordered by lowest CPU id

    @property
    def cpus(self):
        return sorted(cpu for core in self.cores for cpu in core.cpus)

    def online(self, cpus):
        """True when every CPU in `cpus` is online."""
        return set(cpus) <= set(self.cpus)


def online_cpus(root=None):
    """The online CPU ids, from devices/system/cpu/online alone."""
    root = root or sysfs_root()
    return _read_list(os.path.join(root, "devices", "system", "cpu", "online"))


def discover(root=None):
    """Read the topology under `root` (default: KCM_SYSFS or /sys)."""
    root = root or sysfs_root()
    cpu_dir = os.path.join(root, "devices", "system", "cpu")
    online = _read_list(os.path.join(cpu_dir, "online"))
    isolated = set(_read_list(os.path.join(cpu_dir, "isolated"), missing_ok=True))
    nodes = _numa_nodes(os.path.join(root, "devices", "system", "node"))

    threads = {}
    for cpu in online:
        topo = os.path.join(cpu_dir, f"cpu{cpu}", "topology")
        key = (_read_int(os.path.join(topo, "physical_package_id")),
               _read_int(os.path.join(topo, "core_id")))
        threads.setdefault(key, []).append(cpu)

    cores = [
        Core(package=key[0], core_id=key[1], cpus=tuple(sorted(cpus)),
             node=nodes.get(min(cpus), 0),
             isolated=all(cpu in isolated for cpu in cpus))
        for key, cpus in threads.items()
    ]
    cores.sort(key=lambda core: core.cpus[0])
    return Topology(cores=cores)


def _numa_nodes(node_dir):
    """Map CPU id to NUMA node; empty when the kernel has no NUMA support."""
    nodes = {}
    try:
        entries = os.listdir(node_dir)
    except FileNotFoundError:
        return nodes
    for entry in entries:
        if entry.startswith("node") and entry[4:].isdigit():
            path = os.path.join(node_dir, entry, "cpulist")
            for cpu in _read_list(path, missing_ok=True):
                nodes[cpu] = int(entry[4:])
    return nodes


def _read(path):
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError as err:
        raise TopologyError(f"cannot read {path}: {err.strerror}; "
                            "is sysfs mounted (or KCM_SYSFS right)?") from err
    except UnicodeDecodeError as err:
        raise TopologyError(f"{path} is not ASCII text") from err


def _read_list(path, missing_ok=False):
    if missing_ok and not os.path.exists(path):
        return []
    try:
        return cpulist.parse(_read(path), allow_empty=True)
    except CpuListError as err:
        raise TopologyError(f"{path}: {err}") from err


def _read_int(path):
    text = _read(path).strip()
    if not text.lstrip("-").isdigit():
        raise TopologyError(f"{path}: expected an integer, found {text!r}")
    return int(text)
