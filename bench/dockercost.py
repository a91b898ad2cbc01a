"""Benchmark 2: `docker run` through kcm-runc against plain runc.

A dockerd of the benchmark's own (integration.docker: data, exec root and
socket under a temporary directory, no network) runs the same busybox image
with `sh -c 'exit 0'`: with --runtime runc; with --runtime kcm and the
kcm.pool label, which the hook asks dockerd for; and with --runtime kcm and
KCM_POOL in the environment, which the hook reads from config.json. Docker
20.10 cannot set OCI annotations, so the environment is the no-lookup path
that annotations are for runc and Podman.
"""

import importlib.util
import time

from bench import common

TITLE = "Docker: docker run --rm (sh -c 'exit 0'), runtime kcm vs runc"
VARIANTS = {
    "runc": ["--runtime", "runc"],
    "kcm label": ["--runtime", "kcm", "--label", "kcm.pool=infra"],
    "kcm env": ["--runtime", "kcm", "-e", "KCM_POOL=infra"],
}
TARGET = 1.10


def missing():
    """Why this benchmark cannot run here, or None."""
    for module, part in (("kcm_hook.runtime", "the kcm-runc wrapper"),
                         ("integration.docker", "the dockerd test harness")):
        if importlib.util.find_spec(module) is None:
            return f"{part} ({module}, branch docker-runtime) is not on main yet"
    from integration import docker

    tools = docker.missing_tools()
    return f"needs {', '.join(tools)} (apt-get install docker.io)" if tools else None


def run(work, runs):
    reason = missing()
    if reason:
        return common.unavailable(2, TITLE, reason)
    from integration import docker

    session = docker.Session.create()
    try:
        samples = _measure(session, runs)
    finally:
        session.close()
    result = common.Result(2, TITLE)
    _report(result, samples)
    return result


def _measure(session, runs):
    samples = {name: [] for name in VARIANTS}
    for name in VARIANTS:
        _run_once(session, name)  # warm-up: the image's first container
    for _, name in common.rounds(list(VARIANTS), runs):
        samples[name].append(_run_once(session, name))
    session.wait_free()
    return samples


def _run_once(session, name):
    """Seconds of one `docker run --rm` of variant `name`."""
    argv = ["run", "--rm", *VARIANTS[name], session.image, "sh", "-c", "exit 0"]
    start = time.perf_counter()
    done = session.dockerd.cli(*argv)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv)} failed: {done.stderr.strip()}")
    return seconds


def _report(result, samples):
    med = {name: common.median(values) for name, values in samples.items()}
    label = med["kcm label"] / med["runc"]
    result.row("kcm (label) / runc", f"{label:.3f}", f"<= {TARGET}", label <= TARGET)
    result.row("kcm (environment, no lookup) / runc",
               f"{med['kcm env'] / med['runc']:.3f}")
    result.row("label path / environment path",
               f"{med['kcm label'] / med['kcm env']:.3f}")
    result.row("median docker run: runc | kcm label | kcm env",
               " | ".join(common.ms(med[name]) for name in VARIANTS))
    result.raw = {"seconds": samples, "median": med}
