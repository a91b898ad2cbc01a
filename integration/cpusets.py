"""Real processes, each in a cgroup v1 cpuset of its own, and hooks run for them."""

import json
import os
import subprocess
import uuid

from integration.runc import BUSYBOX, KCM_HOOK

CGROUP_ROOT = "/sys/fs/cgroup"
CPUSET_ROOT = "/sys/fs/cgroup/cpuset"


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class CpusetProcesses:
    """`sleep` processes in cgroups <root>/kcm-test-<id>/pN; removed by `cleanup`."""

    def __init__(self):
        self.parent = os.path.join(CPUSET_ROOT, f"kcm-test-{uuid.uuid4().hex[:12]}")
        os.mkdir(self.parent)
        self._inherit(self.parent)
        self.procs = {}  # pid -> (Popen, cgroup dir)

    def _inherit(self, path):
        parent = os.path.dirname(path)
        for name in ("cpuset.mems", "cpuset.cpus"):
            _write(os.path.join(path, name), _read(os.path.join(parent, name)))

    def spawn(self, count):
        """Start `count` processes, each moved into a new cpuset; return their pids."""
        pids = []
        for _ in range(count):
            proc = subprocess.Popen([BUSYBOX, "sleep", "600"], stdin=subprocess.DEVNULL)
            cgroup = os.path.join(self.parent, f"p{proc.pid}")
            os.mkdir(cgroup)
            self._inherit(cgroup)
            _write(os.path.join(cgroup, "cgroup.procs"), str(proc.pid))
            self.procs[proc.pid] = (proc, cgroup)
            pids.append(proc.pid)
        return pids

    def cgroup_cpus(self, pid):
        return _read(os.path.join(self.procs[pid][1], "cpuset.cpus"))

    def kill(self, pid):
        proc, _ = self.procs[pid]
        proc.kill()
        proc.wait()

    def cleanup(self):
        for proc, _ in self.procs.values():
            proc.kill()
            proc.wait()
        for _, cgroup in self.procs.values():
            os.rmdir(cgroup)
        os.rmdir(self.parent)


def allowed_cpus(pid):
    """What the process itself sees: Cpus_allowed_list of /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def oci_state(container_id, pid, bundle, pool=None):
    doc = {"ociVersion": "1.0.2", "id": container_id, "status": "creating", "pid": pid,
           "bundle": bundle, "annotations": {"kcm.pool": pool} if pool else {}}
    return json.dumps(doc).encode()


def start_hook(stage, conf_dir, state, env=None):
    """Start `kcm-hook <stage>` with `state` on stdin; returns the Popen."""
    proc = subprocess.Popen([KCM_HOOK, stage, f"--conf-dir={conf_dir}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdin.write(state)
    proc.stdin.close()
    return proc


def finish(proc, timeout=120):
    """(returncode, stdout, stderr) of a hook started by `start_hook`."""
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.wait(timeout), out.decode(), err.decode()


def run_hooks(stage, conf_dir, states, env=None):
    """Run one hook per state, all at once; [(returncode, stdout, stderr)]."""
    procs = [start_hook(stage, conf_dir, state, env) for state in states]
    return [finish(proc) for proc in procs]


def remove_cgroup(path):
    """rmdir `path` and its children, deepest first, in every v1 hierarchy."""
    for controller in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, controller, path.lstrip("/"))
        if os.path.islink(os.path.join(CGROUP_ROOT, controller)) \
                or not os.path.isdir(top):
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(directory)
            except OSError:
                pass
