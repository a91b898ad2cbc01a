"""Real Docker containers run through kcm-runc, placed by the kcm.pool label.

dockerd 20.10 passes neither labels nor annotations into the OCI config, so
every placement here goes through the hook's label lookup.
"""

import json
import os
import subprocess

import pytest

from integration.docker import config_json, read_trace
from integration.runc import RUNC, wait_for

SHOW_CPUS = ["grep", "Cpus_allowed_list", "/proc/self/status"]
# busybox sleep as PID 1 would ignore SIGTERM: trap it so docker stop is prompt.
WAIT_FOR_TERM = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]


def run(env, *args, label=None, runtime="kcm"):
    """`docker run` through `runtime`; return the CompletedProcess."""
    flags = ["--runtime", runtime]
    if label is not None:
        flags += ["--label", f"kcm.pool={label}"]
    return env.dockerd.cli("run", *flags, *args)


def start_detached(env, label="dataplane", runtime="kcm"):
    """A running container that holds a cpuset; return its id and init pid."""
    result = run(env, "-d", env.image, *WAIT_FOR_TERM, label=label, runtime=runtime)
    assert result.returncode == 0, result.stderr
    container_id = result.stdout.strip()
    pid = int(env.dockerd.ok("inspect", "-f", "{{.State.Pid}}", container_id))
    wait_for(lambda: any(h.container == container_id for h in env.holders()),
             what=f"container {container_id[:12]} to hold a cpuset")
    return container_id, pid


def test_labelled_container_sees_only_the_dataplane_core(docker_env):
    result = run(docker_env, "--rm", docker_env.image, *SHOW_CPUS, label="dataplane")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", "1"]
    docker_env.wait_free()


def test_unlabelled_container_lands_on_infra(docker_env):
    result = run(docker_env, "--rm", docker_env.image, *SHOW_CPUS)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", "0"]


def test_label_path_works_without_annotations_from_dockerd(docker_env):
    container_id, pid = start_detached(docker_env)

    config = config_json(docker_env.dockerd, container_id)
    assert "kcm.pool" not in (config.get("annotations") or {})
    assert not any(e.startswith("KCM_POOL=") for e in config["process"]["env"])
    hook = os.path.join(docker_env.install_dir, "kcm-hook")
    for stage in ("prestart", "poststop"):
        assert [e["path"] for e in config["hooks"][stage]].count(hook) == 1
    assert docker_env.held() == {("dataplane", "1"): [pid]}
    [holder] = docker_env.holders()
    assert (holder.container, holder.pool) == (container_id, "dataplane")


def test_second_dataplane_container_is_refused_with_kcm_message(docker_env):
    first, pid = start_detached(docker_env)

    refused = run(docker_env, "--rm", docker_env.image, *SHOW_CPUS, label="dataplane")

    assert refused.returncode != 0
    assert "kcm-hook: error: pool 'dataplane' is exhausted: 1 of 1 exclusive " \
           "cpusets in use" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert docker_env.held() == {("dataplane", "1"): [pid]}
    assert [h.container for h in docker_env.holders()] == [first]


def test_unknown_pool_label_is_refused_naming_the_pools(docker_env):
    refused = run(docker_env, "--rm", docker_env.image, *SHOW_CPUS, label="gold")

    assert refused.returncode != 0
    assert "pool 'gold' does not exist" in refused.stderr
    assert "controlplane, dataplane, infra" in refused.stderr
    assert docker_env.held() == {}


@pytest.mark.parametrize("action", [["stop"], ["kill"], ["rm", "-f"]])
def test_cpuset_is_freed_when_the_container_ends(docker_env, action):
    container_id, _ = start_detached(docker_env)

    docker_env.dockerd.ok(*action, container_id)

    docker_env.wait_free()
    again = run(docker_env, "--rm", docker_env.image, *SHOW_CPUS, label="dataplane")
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["Cpus_allowed_list:", "1"]


def test_rm_exit_frees_the_cpuset_for_the_next_container(docker_env):
    for _ in range(2):
        result = run(docker_env, "--rm", docker_env.image, *SHOW_CPUS,
                     label="dataplane")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["Cpus_allowed_list:", "1"]
        docker_env.wait_free()


def test_every_runtime_call_passes_through_unchanged(docker_env):
    for path in (docker_env.trace_in, docker_env.trace_out):
        if os.path.exists(path):
            os.unlink(path)
    container_id, _ = start_detached(docker_env, runtime="kcm-traced")
    docker_env.dockerd.ok("kill", container_id)
    docker_env.wait_free()
    docker_env.dockerd.ok("rm", container_id)

    received, passed = read_trace(docker_env.trace_in), read_trace(docker_env.trace_out)
    assert passed == received
    commands = [_subcommand(argv) for argv in received]
    assert {"create", "start", "kill", "delete"} <= set(commands), commands


def test_features_passes_through_unchanged(docker_env):
    direct = subprocess.run([RUNC, "features"], capture_output=True, text=True)
    wrapped = subprocess.run([docker_env.wrapper, "features"], capture_output=True,
                             text=True)

    assert direct.returncode == 0, direct.stderr
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == \
        (direct.returncode, direct.stdout, direct.stderr)


def test_wrapper_error_is_shown_by_docker_run(docker_env):
    result = run(docker_env, "--rm", docker_env.image, *SHOW_CPUS, label="dataplane",
                 runtime="kcm-broken")

    assert result.returncode != 0
    assert "kcm-runc: cannot find the real runtime" in result.stderr
    assert "no-such-runc" in result.stderr
    assert docker_env.held() == {}


def _subcommand(argv):
    from kcm_hook.runtime import parse_argv

    return parse_argv(argv).command


def test_install_registered_kcm_keeping_the_other_settings(docker_env):
    from kcm_hook.runtime import front_script

    with open(docker_env.dockerd.config_file) as f:
        config = json.load(f)

    assert config["runtimes"]["kcm"] == {"path": docker_env.wrapper}
    assert set(config["runtimes"]) == {"kcm", "kcm-traced", "kcm-broken"}
    assert config["cgroup-parent"] == f"/{docker_env.dockerd.cgroup_parent}"
    with open(docker_env.wrapper) as f:
        assert f.read() == front_script()
    assert "dockerd reads daemon.json only when it starts or reloads" in \
        docker_env.install_report
