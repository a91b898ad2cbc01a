"""The kcm.pool label of a Docker container, asked of dockerd with the docker SDK.

dockerd 20.10 passes neither labels nor annotations into the OCI config, so
the prestart hook asks dockerd. It must not inspect the container: dockerd
holds that container's lock while the hook runs, and inspect waits for it
forever. The container list (GET /containers/json) reads dockerd's lock-free
view and carries the labels, so the hook lists all containers filtered by id.
The id filter matches more than the exact id, so the answer is checked again.
"""

import re

from . import logs
from .errors import DockerError
from .oci import POOL_KEY

log = logs.get_logger(__name__)

# Seconds for each request to dockerd (connect, then each read): the version
# check and the list together stay within about two seconds.
REQUEST_TIMEOUT = 1.0
# dockerd names its containers, and their OCI ids, by 64 hex digits.
DOCKER_ID = re.compile(r"[0-9a-f]{64}")


def pool_label(docker_host, container_id):
    """The kcm.pool label of `container_id` at `docker_host`, or None if unlabelled.

    An id that is not a Docker id, or that dockerd does not know, has no label.
    """
    if not DOCKER_ID.fullmatch(container_id):
        log.debug("container %s is not named like a Docker container", container_id)
        return None
    found = [entry for entry in _list(docker_host, container_id)
             if isinstance(entry, dict) and entry.get("Id") == container_id]
    if not found:
        log.debug("dockerd at %s does not know container %s", docker_host, container_id)
        return None
    labels = found[0].get("Labels") or {}
    value = labels.get(POOL_KEY) if isinstance(labels, dict) else None
    log.debug("container %s has label %s=%s", container_id[:12], POOL_KEY, value)
    return value


def _list(docker_host, container_id):
    # TODO: importing the docker SDK (requests, urllib3, ...) costs 70-100 ms
    # on every labelled container start, most of the label path's cost in
    # `make bench` (benchmark 2 misses its 1.10 target). One GET over the unix
    # socket with http.client would cost a few ms; the SDK is the project's
    # chosen client, so that trade is a decision still to make.
    import docker
    import requests

    try:
        client = docker.APIClient(base_url=docker_host, version="auto",
                                  timeout=REQUEST_TIMEOUT)
        try:
            return client.containers(all=True, filters={"id": container_id})
        finally:
            client.close()
    except (docker.errors.DockerException, requests.RequestException, OSError) as err:
        raise DockerError(
            f"cannot read the labels of container {container_id[:12]} from dockerd "
            f"at {docker_host}: {_reason(err)}; start dockerd, or give kcm-hook "
            "install the --docker-host it listens on") from err


def _reason(err):
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:200] + "..."
