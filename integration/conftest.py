import os

import pytest

from integration.runc import Runc


@pytest.fixture(scope="session", autouse=True)
def require_root():
    if os.geteuid() != 0:
        pytest.fail("integration tests run real containers and need root (make test as root)")


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
