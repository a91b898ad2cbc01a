"""Fixtures for unit tests: fake sysfs trees and configuration directories."""

import os

import pytest

from kcm_hook import layout, topology


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def make_sysfs(root, cpus, offline=(), isolated=(), nodes=None):
    """Write a sysfs tree. `cpus` maps CPU id to (package, core id).

    `nodes` maps NUMA node to its CPU ids (default: everything on node 0).
    """
    from kcm_hook import cpulist

    cpu_dir = os.path.join(root, "devices", "system", "cpu")
    online = [cpu for cpu in cpus if cpu not in offline]
    write(os.path.join(cpu_dir, "online"), cpulist.format(online) + "\n")
    write(os.path.join(cpu_dir, "possible"), cpulist.format(cpus) + "\n")
    write(os.path.join(cpu_dir, "isolated"), cpulist.format(isolated) + "\n")
    for cpu, (package, core) in cpus.items():
        topo = os.path.join(cpu_dir, f"cpu{cpu}", "topology")
        if cpu in offline:
            # The kernel removes the topology directory of an offline CPU.
            os.makedirs(os.path.join(cpu_dir, f"cpu{cpu}"), exist_ok=True)
            write(os.path.join(cpu_dir, f"cpu{cpu}", "online"), "0\n")
            continue
        siblings = [c for c, key in cpus.items() if key == (package, core)]
        write(os.path.join(topo, "physical_package_id"), f"{package}\n")
        write(os.path.join(topo, "core_id"), f"{core}\n")
        write(os.path.join(topo, "thread_siblings_list"),
              cpulist.format(siblings) + "\n")
    for node, members in (nodes or {0: list(cpus)}).items():
        write(os.path.join(root, "devices", "system", "node", f"node{node}", "cpulist"),
              cpulist.format(c for c in members if c not in offline) + "\n")
    return root


def sixteen_cpus():
    """One socket, 8 cores, siblings (0,8) ... (7,15)."""
    return {cpu: (0, cpu % 8) for cpu in range(16)}


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    """Factory: sysfs(cpus, ...) writes a fake tree and points KCM_SYSFS at it."""
    def factory(cpus, **kwargs):
        root = make_sysfs(str(tmp_path / "sys"), cpus, **kwargs)
        monkeypatch.setenv("KCM_SYSFS", root)
        return root
    return factory


@pytest.fixture
def conf_dir(tmp_path, monkeypatch):
    """An initialised configuration directory for the 16-CPU machine (defaults 4/1)."""
    root = make_sysfs(str(tmp_path / "sys"), sixteen_cpus())
    monkeypatch.setenv("KCM_SYSFS", root)
    path = str(tmp_path / "kcm")
    layout.init(path, topology.discover(), 4, 1)
    return path
