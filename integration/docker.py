"""A real dockerd of the test session's own, and the 20.10 client that talks to it.

Everything dockerd keeps lives under one temporary directory: data root, exec
root (and the containerd it starts there), pid file, socket and daemon.json.
Its containers go under a cgroup parent of their own. No iptables, no bridge:
the containers have no network, and nothing else on the host is touched.
"""

import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import uuid

from integration.cpusets import remove_cgroup
from integration.runc import make_rootfs, wait_for

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
# /usr/local/bin/docker on this machine is an unrelated newer client that
# comes first in PATH; the 20.10 client of docker.io is /usr/bin/docker.
DOCKER_CLI = "/usr/bin/docker"


def missing_tools():
    """What this machine lacks to run a dockerd; empty when nothing."""
    return [path for path in (DOCKERD, DOCKER_CLI, shutil.which("containerd") or "")
            if not (path and os.access(path, os.X_OK))]


class Dockerd:
    """One dockerd process under `root`, started with `daemon_config` as daemon.json."""

    def __init__(self, root):
        self.root = root
        self.socket = os.path.join(root, "docker.sock")
        self.host = f"unix://{self.socket}"
        self.config_file = os.path.join(root, "daemon.json")
        self.log_path = os.path.join(root, "dockerd.log")
        self.cgroup_parent = f"kcm-test-dockerd-{uuid.uuid4().hex[:8]}"
        self.client_config = os.path.join(root, "client")
        self.process = None

    def write_config(self, doc):
        with open(self.config_file, "w") as f:
            json.dump(doc, f, indent=2)

    def base_config(self):
        return {"cgroup-parent": f"/{self.cgroup_parent}"}

    def start(self, timeout=120):
        os.makedirs(self.client_config, exist_ok=True)
        argv = [DOCKERD, f"--config-file={self.config_file}",
                f"--data-root={self.root}/data", f"--exec-root={self.root}/exec",
                f"--pidfile={self.root}/dockerd.pid", "-H", self.host,
                "--iptables=false", "--ip6tables=false", "--bridge=none",
                "--storage-driver=vfs"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        wait_for(self._answers, timeout, f"dockerd to answer on {self.socket} "
                                         f"(log: {self.log_path})")

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"dockerd exited with {self.process.returncode}: "
                                 f"{self.log_tail()}")
        return os.path.exists(self.socket) and self.cli("version").returncode == 0

    def log_tail(self, lines=20):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def cli(self, *args, timeout=120, input=None):
        """Run the docker client against this dockerd; return the CompletedProcess."""
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": self.root,
               "DOCKER_CONFIG": self.client_config}
        return subprocess.run([DOCKER_CLI, "-H", self.host, *args], capture_output=True,
                              text=input is None or isinstance(input, str),
                              timeout=timeout, env=env, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args, timeout=120):
        """stdout of a client command that must succeed."""
        result = self.cli(*args, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def import_rootfs(self, directory, tag):
        """`docker import` the tree at `directory` as image `tag`."""
        tar_path = os.path.join(self.root, f"{tag.replace(':', '_')}.tar")
        with tarfile.open(tar_path, "w") as tar:
            tar.add(directory, arcname=".")
        self.ok("import", tar_path, tag, timeout=600)
        os.unlink(tar_path)
        return tag

    def remove_all_containers(self):
        ids = self.cli("ps", "-aq").stdout.split()
        if ids:
            self.cli("rm", "-f", *ids)

    def stop(self, timeout=60):
        """Stop dockerd (and its containerd) and undo what it left on the host."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.remove_all_containers()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self._unmount_leftovers()
        self._remove_cgroups()

    def _unmount_leftovers(self):
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points if p.startswith(self.root + "/")),
                            key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)

    def _remove_cgroups(self):
        remove_cgroup(self.cgroup_parent)


def busybox_image(dockerd, tag="kcm-test-busybox:latest"):
    """An image of one static busybox, imported into `dockerd`."""
    rootfs = make_rootfs(tempfile.mkdtemp(prefix="busybox-", dir=dockerd.root))
    dockerd.import_rootfs(rootfs, tag)
    shutil.rmtree(rootfs)
    return tag


def tracer_script(path, log_path, command):
    """A runtime stand-in that appends its argv as one tab-separated line, then
    execs `command` (an argv prefix, as shell words) with the same arguments."""
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "line=$(printf '%s\\t' \"$@\")\n"
                f"printf '%s\\n' \"$line\" >> {log_path}\n"
                f"exec {command} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def read_trace(path):
    """The argv lists a tracer_script logged, in order."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t")[:-1] for line in f]


def config_json(dockerd, container_id):
    """The OCI config.json containerd gave the runtime for `container_id`."""
    path = os.path.join(dockerd.root, "exec", "containerd", "daemon",
                        "io.containerd.runtime.v2.task", "moby", container_id,
                        "config.json")
    with open(path) as f:
        return json.load(f)


class Session:
    """The test session's dockerd, configuration directory, install dir and image."""

    RUNTIMES = ("kcm-traced", "kcm-broken")

    def __init__(self, root):
        self.root = root
        self.dockerd = Dockerd(root)
        self.conf_dir = os.path.join(root, "kcm")
        self.install_dir = os.path.join(root, "install")
        self.wrapper = os.path.join(self.install_dir, "kcm-runc")
        self.trace_in = os.path.join(root, "trace-in.log")
        self.trace_out = os.path.join(root, "trace-out.log")
        self.image = None

    @classmethod
    def create(cls):
        session = cls(tempfile.mkdtemp(prefix="kcm-dockerd-", dir="/tmp"))
        try:
            session.setup()
        except BaseException:
            session.close()
            raise
        return session

    def setup(self):
        from kcm_hook import layout, topology

        layout.init(self.conf_dir, topology.discover("/sys"), 1, 0)
        config = self.dockerd.base_config()
        config["runtimes"] = self.test_runtimes()
        self.dockerd.write_config(config)
        self.install()
        self.dockerd.start()
        self.image = busybox_image(self.dockerd)

    def install(self):
        """`kcm-hook install` into the install dir, registering kcm in daemon.json."""
        import sys

        kcm_hook = os.path.join(os.path.dirname(sys.executable), "kcm-hook")
        argv = [kcm_hook, "install", f"--install-dir={self.install_dir}",
                f"--conf-dir={self.conf_dir}",
                f"--docker-config={self.dockerd.config_file}",
                f"--docker-host={self.dockerd.host}"]
        result = subprocess.run(argv, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise AssertionError(f"kcm-hook install failed: {result.stderr}")
        self.install_report = result.stdout

    def write_settings(self, path, runtime):
        settings = {"conf_dir": self.conf_dir, "docker_host": self.dockerd.host,
                    "hook": os.path.join(self.install_dir, "kcm-hook"),
                    "runtime": runtime}
        with open(path, "w") as f:
            json.dump(settings, f)

    def test_runtimes(self):
        """kcm-traced logs the argv Docker passes and the argv runc gets;
        kcm-broken is kcm-runc told of a runtime that does not exist."""
        runc = shutil.which("runc") or "/usr/sbin/runc"
        traced_json = os.path.join(self.root, "traced.json")
        broken_json = os.path.join(self.root, "broken.json")
        self.write_settings(traced_json, tracer_script(
            os.path.join(self.root, "trace-out"), self.trace_out, runc))
        self.write_settings(broken_json, os.path.join(self.root, "no-such-runc"))
        front = tracer_script(os.path.join(self.root, "trace-in"), self.trace_in,
                              f"env KCM_RUNC_CONFIG={traced_json} {self.wrapper}")
        broken = os.path.join(self.root, "broken")
        with open(broken, "w") as f:
            f.write(f"#!/bin/sh\nKCM_RUNC_CONFIG={broken_json} exec {self.wrapper} "
                    "\"$@\"\n")
        os.chmod(broken, 0o755)
        return {"kcm-traced": {"path": front}, "kcm-broken": {"path": broken}}

    def holders(self):
        from kcm_hook.pools import Configuration

        return Configuration(self.conf_dir).holders()

    def held(self):
        """{(pool, cpus): tasks} of every cpuset someone holds."""
        from kcm_hook.pools import Configuration

        return {(name, cpus): cpuset.tasks
                for name, pool in Configuration(self.conf_dir).pools().items()
                for cpus, cpuset in pool.cpusets.items() if cpuset.tasks}

    def wait_free(self, timeout=30):
        wait_for(lambda: not self.held() and not self.holders(), timeout,
                 "every cpuset to be free")

    def close(self):
        try:
            self.dockerd.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
