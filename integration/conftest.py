import json
import os

import pytest

from integration.runc import Runc


@pytest.fixture(scope="session", autouse=True)
def require_root():
    if os.geteuid() != 0:
        pytest.fail("integration tests run real containers and need root "
                    "(make test as root)")


@pytest.fixture
def runc(tmp_path):
    r = Runc(str(tmp_path / "runc-root"))
    yield r
    r.cleanup()


@pytest.fixture
def host_conf(tmp_path):
    """A configuration directory initialised on this machine's real topology.

    Uses --num-dp-cores=1 --num-cp-cores=0: this machine has 2 CPUs, so
    dataplane gets CPU 1 and infra CPU 0.
    """
    from kcm_hook import layout, topology

    path = str(tmp_path / "kcm")
    layout.init(path, topology.discover("/sys"), 1, 0)
    return path


@pytest.fixture(scope="session")
def docker_session():
    """A dockerd of the session's own with the kcm runtime registered, and an image.

    Skipped, saying why, only when dockerd or its client is not installed.
    """
    from integration import docker

    missing = docker.missing_tools()
    if missing:
        pytest.skip(f"dockerd tests need {', '.join(missing)} "
                    "(apt-get install docker.io)")
    session = docker.Session.create()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def docker_env(docker_session):
    """The session's dockerd; afterwards no container is left and nothing is held."""
    yield docker_session
    docker_session.dockerd.remove_all_containers()
    docker_session.wait_free()


@pytest.fixture
def processes():
    """Real processes, each in a cpuset cgroup of its own, removed afterwards."""
    from integration.cpusets import CpusetProcesses

    procs = CpusetProcesses()
    yield procs
    procs.cleanup()


@pytest.fixture
def bundle(tmp_path):
    """A bundle directory with a minimal config.json, for hooks run by hand."""
    path = tmp_path / "bundle"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"ociVersion": "1.0.2"}))
    return str(path)
