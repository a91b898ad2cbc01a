"""A fake /proc and cgroup tree, for hooks on machines this one is not."""

import os

from tests.conftest import write


class FakeHost:
    """KCM_PROCFS tree with processes in cgroups under a fake cgroup mount."""

    def __init__(self, root, version=1):
        self.proc = os.path.join(root, "proc")
        self.cgroup_root = os.path.join(root, "cgroup",
                                        "cpuset" if version == 1 else "")
        self.version = version
        if version == 1:
            mount = (f"30 25 0:27 / {self.cgroup_root} rw,nosuid - cgroup cgroup "
                     "rw,cpuset\n31 25 0:28 / /fake/unified rw - cgroup2 cgroup2 rw\n")
        else:
            mount = (f"30 25 0:27 / {self.cgroup_root.rstrip('/')} rw - cgroup2 "
                     "cgroup2 rw\n")
        write(os.path.join(self.proc, "self", "mountinfo"),
              "22 1 8:1 / / rw - ext4 /dev/vda rw\n" + mount)
        self._cgroup("", cpus="0-15", mems="0")

    def _cgroup(self, path, cpus="", mems=""):
        directory = os.path.join(self.cgroup_root, path.lstrip("/"))
        write(os.path.join(directory, "cpuset.cpus"), cpus)
        if self.version == 1 or mems:
            write(os.path.join(directory, "cpuset.mems"), mems)
        return directory

    def spawn(self, pid, cgroup, start=1000, mems="0"):
        """A process `pid` in `cgroup`; return the cgroup directory."""
        directory = self._cgroup(cgroup, cpus="0-15", mems=mems)
        if self.version == 1:
            lines = f"12:pids:/x\n4:cpuset:{cgroup}\n0::/\n"
        else:
            lines = f"0::{cgroup}\n"
        write(os.path.join(self.proc, str(pid), "cgroup"), lines)
        self.set_start(pid, start)
        return directory

    def set_start(self, pid, start):
        fields = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 10
        write(os.path.join(self.proc, str(pid), "stat"),
              f"{pid} (sh (odd) name) " + " ".join(fields) + "\n")

    def kill(self, pid):
        for name in ("cgroup", "stat"):
            os.unlink(os.path.join(self.proc, str(pid), name))
        os.rmdir(os.path.join(self.proc, str(pid)))

    def cpus_of(self, cgroup):
        path = os.path.join(self.cgroup_root, cgroup.lstrip("/"), "cpuset.cpus")
        with open(path) as f:
            return f.read()


class FakeProc(FakeHost):
    """A FakeHost (cgroup v1) that remembers which pids live, each in /ctr-<pid>."""

    def __init__(self, root):
        super().__init__(root, version=1)
        self.starts = {}

    def spawn(self, pid, start=1000, cgroup=None):
        """A live process `pid` in `cgroup` (default /ctr-<pid>); return `pid`."""
        super().spawn(pid, cgroup or f"/ctr-{pid}", start=start)
        self.starts[pid] = start
        return pid

    def kill(self, pid):
        if self.starts.pop(pid, None) is not None:
            super().kill(pid)

    def alive(self, pid):
        return pid in self.starts

    def cgroup_cpus(self, pid):
        return self.cpus_of(f"/ctr-{pid}").strip()
