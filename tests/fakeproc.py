"""A fake /proc and cpuset hierarchy, for hooks run against fake topologies.

Only what kcm-hook reads: <pid>/stat (state and start time), <pid>/cgroup,
and self/mountinfo naming a cgroup v1 cpuset mount under the same tree.
"""

import os
import shutil


class FakeProc:
    """Processes that exist as files: spawn, kill, and reuse of a pid."""

    def __init__(self, root):
        self.root = root
        self.proc = os.path.join(root, "proc")
        self.cgroup_root = os.path.join(root, "cgroup", "cpuset")
        os.makedirs(os.path.join(self.proc, "self"), exist_ok=True)
        os.makedirs(self.cgroup_root, exist_ok=True)
        _write(os.path.join(self.cgroup_root, "cpuset.mems"), "0\n")
        _write(os.path.join(self.proc, "self", "mountinfo"),
               f"30 25 0:26 / {self.cgroup_root} rw,nosuid - cgroup cgroup rw,cpuset\n")
        self.starts = {}

    def spawn(self, pid, start=1000, cgroup=None):
        """A live process `pid` in cgroup `cgroup` (default /ctr-<pid>)."""
        cgroup = cgroup or f"/ctr-{pid}"
        pid_dir = os.path.join(self.proc, str(pid))
        os.makedirs(pid_dir, exist_ok=True)
        _write(os.path.join(pid_dir, "stat"),
               f"{pid} (fake) S " + " ".join(["0"] * 18) + f" {start} 0 0\n")
        _write(os.path.join(pid_dir, "cgroup"), f"7:cpuset:{cgroup}\n")
        cg_dir = os.path.join(self.cgroup_root, cgroup.lstrip("/"))
        os.makedirs(cg_dir, exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not os.path.exists(os.path.join(cg_dir, name)):
                _write(os.path.join(cg_dir, name), "")
        self.starts[pid] = start
        return pid

    def kill(self, pid):
        shutil.rmtree(os.path.join(self.proc, str(pid)), ignore_errors=True)
        self.starts.pop(pid, None)

    def alive(self, pid):
        return pid in self.starts

    def cgroup_cpus(self, pid, cgroup=None):
        cgroup = cgroup or f"/ctr-{pid}"
        with open(os.path.join(self.cgroup_root, cgroup.lstrip("/"), "cpuset.cpus")) as f:
            return f.read().strip()


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
