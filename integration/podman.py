"""Real Podman with storage, state and cgroups of its own under a test directory.

Podman here needs runc (crun refuses this cgroup setup), the cgroupfs manager,
the vfs storage driver, explicit ulimits and no network. Containers go under
a cgroup parent of their own, which cleanup() removes.
"""

import os
import shutil
import subprocess
import tempfile
import uuid

from integration.cpusets import remove_cgroup
from integration.runc import RUNC

PODMAN = shutil.which("podman") or "/usr/bin/podman"


class Podman:
    def __init__(self, hooks_dir):
        # Podman refuses a runroot longer than 50 characters: no pytest tmp_path.
        self.base = tempfile.mkdtemp(prefix="kcm-podman-", dir="/tmp")
        self.hooks_dir = hooks_dir
        self.cgroup_parent = f"/kcm-test-podman-{uuid.uuid4().hex[:12]}"

    def cmd(self, *args):
        return [PODMAN, "--root", os.path.join(self.base, "root"),
                "--runroot", os.path.join(self.base, "runroot"),
                "--tmpdir", os.path.join(self.base, "tmp"),
                "--runtime", RUNC, "--cgroup-manager", "cgroupfs",
                "--storage-driver", "vfs", "--events-backend", "file",
                "--hooks-dir", self.hooks_dir, *args]

    def podman(self, *args, input=None, timeout=120):
        """Run a podman command; return the CompletedProcess (text)."""
        return subprocess.run(self.cmd(*args), capture_output=True, text=True,
                              input=input, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def run_args(self):
        return ["--network", "none", "--ulimit", "nofile=1024:1024",
                "--ulimit", "nproc=1024:1024", "--cgroup-parent", self.cgroup_parent]

    def import_rootfs(self, rootfs, name):
        """`tar -C rootfs -c . | podman import - name`."""
        tar = subprocess.run(["tar", "-C", rootfs, "-c", "."], capture_output=True,
                             check=True)
        result = subprocess.run(self.cmd("import", "-", name), input=tar.stdout,
                                capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode()
        return name

    def pid(self, container):
        out = self.podman("inspect", "--format", "{{.State.Pid}}", container)
        return int(out.stdout.strip()) if out.returncode == 0 else None

    def cleanup(self):
        self.podman("rm", "--all", "--force", "--time", "0")
        self.podman("rmi", "--all", "--force")
        remove_cgroup(self.cgroup_parent)
        shutil.rmtree(self.base, ignore_errors=True)
