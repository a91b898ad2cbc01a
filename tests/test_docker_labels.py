"""Asking dockerd for labels: ids it cannot know, and a dockerd that does not answer.

The answers of a real dockerd are tested in integration/test_docker.py.
"""

import socket

import pytest

from kcm_hook import docker_labels
from kcm_hook.errors import DockerError

DOCKER_ID = "0123456789abcdef" * 4


@pytest.mark.parametrize("container_id", ["runc-test", "0123", DOCKER_ID.upper(),
                                          DOCKER_ID + "0", ".*"])
def test_id_that_docker_never_makes_has_no_label(container_id):
    assert docker_labels.pool_label("unix:///nonexistent.sock", container_id) is None


def test_dockerd_that_is_not_there_is_named(tmp_path):
    host = f"unix://{tmp_path}/docker.sock"

    with pytest.raises(DockerError, match=f"cannot read the labels of container "
                                          f"0123456789ab from dockerd at {host}: "):
        docker_labels.pool_label(host, DOCKER_ID)


def test_dockerd_that_accepts_but_never_answers_is_given_up(tmp_path):
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(8)  # connections wait in the backlog, never answered

        with pytest.raises(DockerError, match="timed out.*start dockerd, or give "
                                              "kcm-hook install the --docker-host"):
            docker_labels.pool_label(f"unix://{path}", DOCKER_ID)
