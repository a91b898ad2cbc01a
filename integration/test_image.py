"""The kcm Docker image, built by scripts/build-image.py as `make image` does.

There is no image registry here: the base is a Debian minbase with python3
from debootstrap, imported into the session's dockerd. The build itself runs
with no network.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from kcm_hook.pools import Configuration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_IMAGE = os.path.join(REPO, "scripts", "build-image.py")
DEBOOTSTRAP = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
TAG = "kcm-test-image:latest"


@pytest.fixture(scope="module")
def image(docker_session):
    """The kcm image built on a debootstrapped python3 base."""
    if not os.access(DEBOOTSTRAP, os.X_OK):
        pytest.skip("the image test needs debootstrap (apt-get install debootstrap)")
    rootfs = os.path.join(docker_session.root, "python-base")
    subprocess.run([DEBOOTSTRAP, "--variant=minbase", "--include=python3", "bookworm",
                    rootfs], check=True, capture_output=True, stdin=subprocess.DEVNULL,
                   timeout=900)
    base = docker_session.dockerd.import_rootfs(rootfs, "kcm-test-python-base:latest")
    shutil.rmtree(rootfs)

    built = subprocess.run([sys.executable, BUILD_IMAGE, "--base", base, "--tag", TAG,
                            "--docker-host", docker_session.dockerd.host],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=900)
    assert built.returncode == 0, built.stderr
    assert f"built image {TAG}" in built.stdout
    return TAG


def test_image_runs_the_cli_help(docker_session, image):
    result = docker_session.dockerd.cli("run", "--rm", "--network=none", image,
                                        "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kcm (-h | --help)")
    assert "kcm init [--conf-dir=<dir>]" in result.stdout


def test_image_without_arguments_shows_help(docker_session, image):
    result = docker_session.dockerd.cli("run", "--rm", "--network=none", image)

    assert result.returncode == 0, result.stderr
    assert "usage: kcm" in result.stdout


def test_image_init_writes_the_bind_mounted_configuration(docker_session, image,
                                                          tmp_path):
    conf_dir = tmp_path / "kcm"
    conf_dir.mkdir(mode=0o755)

    result = docker_session.dockerd.cli(
        "run", "--rm", "--network=none", "-v", f"{conf_dir}:/etc/kcm", image, "init",
        "--num-dp-cores=1", "--num-cp-cores=0")

    assert result.returncode == 0, result.stderr
    assert "wrote /etc/kcm" in result.stdout
    pools = Configuration(str(conf_dir)).pools()
    assert {name: list(pool.cpusets) for name, pool in pools.items()} == \
        {"dataplane": ["1"], "controlplane": [], "infra": ["0"]}


def test_image_reports_a_bad_command_as_usage(docker_session, image):
    result = docker_session.dockerd.cli("run", "--rm", "--network=none", image, "init",
                                        "--num-dp-cores=x")

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("kcm-hook: error: argument --num-dp-cores")


def test_image_entrypoint_is_the_cli(docker_session, image):
    out = docker_session.dockerd.ok("image", "inspect", image)

    [info] = json.loads(out)
    assert info["Config"]["Entrypoint"] == ["python3", "-m", "kcm_hook"]
    assert "PYTHONPATH=/opt/kcm/site" in info["Config"]["Env"]


def test_base_without_python_is_refused_naming_it(docker_session):
    result = subprocess.run([sys.executable, BUILD_IMAGE,
                             "--base", docker_session.image,
                             "--tag", "kcm-test-never:latest",
                             "--docker-host", docker_session.dockerd.host],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=300)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"build-image: error: base image {docker_session.image} "
                           "cannot run python3")
    assert "choose a base with Python 3.9 or later" in line
    assert docker_session.dockerd.cli("image", "inspect",
                                      "kcm-test-never:latest").returncode != 0


def test_image_install_writes_a_working_install_dir(docker_session, image, tmp_path):
    install_dir = tmp_path / "opt-kcm"
    install_dir.mkdir(mode=0o755)

    result = docker_session.dockerd.cli(
        "run", "--rm", "--network=none", "-v", f"{install_dir}:{install_dir}", image,
        "install", f"--install-dir={install_dir}", "--conf-dir=/etc/kcm")

    assert result.returncode == 0, result.stderr
    assert f"wrote {install_dir}/kcm-install.json" in result.stdout
    # The launcher names the image's python3, which is the host's on this base.
    version = subprocess.run([str(install_dir / "kcm-hook"), "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0, version.stderr
    assert version.stdout.split()[-1] == __import__("kcm_hook").__version__
    with open(install_dir / "kcm-install.json") as f:
        assert json.load(f)["hook"] == str(install_dir / "kcm-hook")
