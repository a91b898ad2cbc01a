"""The installed kcm-hook, run by real runc and real Podman with clean environments.

The hooks come from the hooks files install wrote, unchanged; its launcher
runs the installed library tree under the host's /usr/bin/python3 -I -S, which
cannot import kcm_hook, the docker SDK or pyroute2 by itself.
"""

import json
import os
import signal
import subprocess

import pytest

from integration.podman import Podman
from integration.runc import (BIN_DIR, make_bundle, make_rootfs, read_when,
                              wait_for)
from integration.test_reconcile import NO_PERIODIC_SWEEP, nothing_held
from integration.test_runc import SHOW_AND_WAIT, SHOW_CPUS, held_tasks, pool_cpus
from kcm_hook import allocator, install
from kcm_hook.pools import Configuration

SOURCE_KCM_HOOK = os.path.join(BIN_DIR, "kcm-hook")


@pytest.fixture
def installed(tmp_path, host_conf):
    """Install with the project's own command into a temporary directory."""
    dest = str(tmp_path / "opt-kcm")
    result = subprocess.run([SOURCE_KCM_HOOK, "install", f"--install-dir={dest}",
                             f"--conf-dir={host_conf}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "carries kcm_hook, docker" in result.stdout
    assert "pyroute2" in result.stdout
    return dest


def installed_hooks(dest):
    """config.json hooks made of the installed hooks files' entries."""
    hooks = {}
    for stage, name in install.HOOKS_FILES.items():
        with open(os.path.join(dest, install.HOOKS_SUBDIR, name)) as f:
            doc = json.load(f)
        assert doc["stages"] == [stage]
        hooks[stage] = [doc["hook"]]
    return hooks


def test_host_python_has_no_site_packages_to_lean_on():
    for module in ("kcm_hook", "docker", "pyroute2"):
        result = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c",
                                 f"import {module}"], env={}, capture_output=True)
        assert result.returncode != 0, module


def test_runc_with_empty_environment_runs_installed_hooks(runc, host_conf, installed,
                                                          tmp_path):
    [dataplane] = pool_cpus(host_conf, "dataplane")
    [infra] = pool_cpus(host_conf, "infra")
    hooks = installed_hooks(installed)
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    pinned = make_bundle(str(tmp_path / "dp"), SHOW_CPUS, rootfs=rootfs, hooks=hooks,
                         annotations={"kcm.pool": "dataplane"})
    plain = make_bundle(str(tmp_path / "plain"), SHOW_CPUS, rootfs=rootfs, hooks=hooks)

    for container, bundle, cpus in (("dp", pinned, dataplane), ("plain", plain, infra)):
        result = runc.run(container, bundle, env={})
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["Cpus_allowed_list:", cpus]
        assert held_tasks(host_conf) == {}


def test_runc_delete_with_empty_environment_frees_the_cpuset(runc, host_conf,
                                                             installed, tmp_path):
    [dataplane] = pool_cpus(host_conf, "dataplane")
    bundle = make_bundle(str(tmp_path / "b"), SHOW_AND_WAIT, hooks=installed_hooks(
        installed), annotations={"kcm.pool": "dataplane"})
    log = str(tmp_path / "b.log")

    with open(log, "w") as log_file:
        started = subprocess.run(runc.cmd("run", "--detach", "--bundle", bundle,
                                          "held"),
                                 stdout=log_file, stderr=subprocess.STDOUT, env={},
                                 stdin=subprocess.DEVNULL, timeout=60)
    assert started.returncode == 0, open(log).read()
    read_when(log, f"Cpus_allowed_list:\t{dataplane}")
    pid = runc.state("held")["pid"]
    assert held_tasks(host_conf) == {("dataplane", dataplane): [pid]}

    subprocess.run(runc.cmd("kill", "held", "KILL"), env={}, capture_output=True)
    deleted = subprocess.run(runc.cmd("delete", "--force", "held"), env={},
                             capture_output=True, text=True)
    assert deleted.returncode == 0, deleted.stderr
    assert held_tasks(host_conf) == {}


def test_installed_watch_listens_to_events_and_frees_a_killed_holder(
        host_conf, installed, tmp_path):
    holder = subprocess.Popen(["sleep", "600"])
    conf = Configuration(host_conf)
    with conf.locked():
        allocator.allocate(conf, "dataplane", holder.pid, container="c1")
    log = str(tmp_path / "watch.log")

    with open(log, "w") as log_file:
        watch = subprocess.Popen([os.path.join(installed, "kcm-hook"), "reconcile",
                                  f"--conf-dir={host_conf}", "--watch",
                                  NO_PERIODIC_SWEEP],
                                 stdout=log_file, stderr=subprocess.STDOUT,
                                 env={"KCM_LOG_LEVEL": "info"},
                                 stdin=subprocess.DEVNULL)
    try:
        started = wait_for(lambda: _watch_started(log), what="the watcher to start")
        assert "listening to process events" in started, started
        assert not nothing_held(host_conf)
        holder.kill()
        holder.wait()

        wait_for(lambda: nothing_held(host_conf), what="the watcher to free the cpuset")
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(timeout=60) == 0
    finally:
        for proc in (watch, holder):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with open(log) as f:
        text = f.read()
    assert "falling back" not in text and "pyroute2" not in text
    assert f"pid={holder.pid} container=c1" in text


def _watch_started(log):
    with open(log) as f:
        text = f.read()
    return text if "listening to" in text or "falling back" in text else None


# -- Podman -------------------------------------------------------------------------


@pytest.fixture
def podman(tmp_path, installed):
    p = Podman(os.path.join(installed, install.HOOKS_SUBDIR))
    p.import_rootfs(make_rootfs(str(tmp_path / "podman-rootfs")), "kcm-busybox")
    yield p
    p.cleanup()


def podman_show_cpus(podman, *flags):
    result = podman.podman("run", "--rm", *podman.run_args(), *flags, "kcm-busybox",
                           *SHOW_CPUS)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_podman_annotated_container_is_confined_and_freed_on_exit(podman, host_conf):
    [dataplane] = pool_cpus(host_conf, "dataplane")

    shown = podman_show_cpus(podman, "--annotation", "kcm.pool=dataplane")

    assert shown == ["Cpus_allowed_list:", dataplane]
    wait_for(lambda: held_tasks(host_conf) == {}, what="poststop to free the cpuset")


def test_podman_container_naming_no_pool_lands_on_infra(podman, host_conf):
    [infra] = pool_cpus(host_conf, "infra")

    assert podman_show_cpus(podman) == ["Cpus_allowed_list:", infra]
    wait_for(lambda: held_tasks(host_conf) == {}, what="poststop to free the cpuset")


def test_podman_pool_from_container_environment(podman, host_conf):
    [dataplane] = pool_cpus(host_conf, "dataplane")

    shown = podman_show_cpus(podman, "--env", "KCM_POOL=dataplane")

    assert shown == ["Cpus_allowed_list:", dataplane]


def test_podman_rm_force_frees_a_running_container(podman, host_conf):
    [dataplane] = pool_cpus(host_conf, "dataplane")
    started = podman.podman("run", "--detach", *podman.run_args(), "--annotation",
                            "kcm.pool=dataplane", "kcm-busybox", *SHOW_AND_WAIT)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    pid = podman.pid(container)
    assert held_tasks(host_conf) == {("dataplane", dataplane): [pid]}

    refused = podman.podman("run", "--rm", *podman.run_args(), "--annotation",
                            "kcm.pool=dataplane", "kcm-busybox", *SHOW_CPUS)
    assert refused.returncode != 0
    assert "pool 'dataplane' is exhausted" in refused.stderr
    assert held_tasks(host_conf) == {("dataplane", dataplane): [pid]}

    removed = podman.podman("rm", "--force", "--time", "0", container)
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: held_tasks(host_conf) == {}, what="poststop to free the cpuset")

    assert podman_show_cpus(podman, "--annotation", "kcm.pool=dataplane") == [
        "Cpus_allowed_list:", dataplane]
