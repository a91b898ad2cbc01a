"""Real runc containers with busybox-static as the whole root filesystem."""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
RUNC = shutil.which("runc") or "/usr/sbin/runc"
BIN_DIR = os.path.dirname(sys.executable)
KCM_HOOK = os.path.join(BIN_DIR, "kcm-hook")


def hook_command(stage, conf_dir, program=KCM_HOOK):
    return {"path": program, "args": [os.path.basename(program), stage,
                                      f"--conf-dir={conf_dir}"]}


def make_rootfs(path):
    """A rootfs of one static busybox and its applet links."""
    bin_dir = os.path.join(path, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(bin_dir, "busybox"))
    for applet in ("sh", "cat", "grep", "sleep", "echo", "true", "nproc"):
        link = os.path.join(bin_dir, applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for sub in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


def make_bundle(path, args, annotations=None, hooks=None, env=None, rootfs=None):
    """A bundle at `path` running `args`; `hooks` maps a stage to hook entries."""
    os.makedirs(path, exist_ok=True)
    if rootfs is None:
        rootfs = make_rootfs(os.path.join(path, "rootfs"))
    subprocess.run([RUNC, "spec", "--bundle", path], check=True)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["root"] = {"path": os.path.abspath(rootfs), "readonly": True}
    # A cgroup of its own, so that tests running side by side never share one.
    config["linux"]["cgroupsPath"] = f"/kcm-test-{uuid.uuid4().hex[:12]}"
    config["process"]["terminal"] = False
    config["process"]["args"] = list(args)
    if env:
        config["process"]["env"] += list(env)
    if annotations:
        config["annotations"] = dict(annotations)
    if hooks:
        config["hooks"] = hooks
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return path


def kcm_hooks(conf_dir, program=KCM_HOOK):
    return {"prestart": [hook_command("prestart", conf_dir, program)],
            "poststop": [hook_command("poststop", conf_dir, program)]}


class Runc:
    """runc with a state root of its own, so tests never see other containers."""

    def __init__(self, root):
        self.root = root

    def cmd(self, *args):
        return [RUNC, "--root", self.root, *args]

    def run(self, container_id, bundle, timeout=60, env=None):
        """Run in the foreground; return the CompletedProcess (stdout, stderr text)."""
        return subprocess.run(self.cmd("run", "--bundle", bundle, container_id),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)

    def run_detached(self, container_id, bundle, log_path, timeout=60):
        """`runc run --detach`; runc's and the container's output go to `log_path`.

        The container inherits runc's stdout and stderr, so neither may be a
        pipe this process waits on. Returns runc's exit status.
        """
        with open(log_path, "w") as log:
            return subprocess.run(self.cmd("run", "--detach", "--bundle", bundle,
                                           container_id),
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                  timeout=timeout).returncode

    def state(self, container_id):
        out = subprocess.run(self.cmd("state", container_id), capture_output=True,
                             text=True)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def delete(self, container_id):
        """Kill and delete; runc runs the poststop hooks on delete."""
        subprocess.run(self.cmd("kill", container_id, "KILL"), capture_output=True)
        return subprocess.run(self.cmd("delete", "--force", container_id),
                              capture_output=True, text=True)

    def cleanup(self):
        if not os.path.isdir(self.root):
            return
        for container_id in os.listdir(self.root):
            self.delete(container_id)


def wait_for(predicate, timeout=20.0, what="condition"):
    """Poll `predicate` until it returns a true value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def read_when(path, needle, timeout=20.0):
    """The text of `path` once it contains `needle`."""
    def ready():
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return text if needle in text else None
    return wait_for(ready, timeout, f"{needle!r} in {path}")
