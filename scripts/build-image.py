#!/usr/bin/env python3
"""Build the kcm Docker image from the Dockerfile, without network in the build.

Asks the base image which Python it has (version, machine, glibc), installs
kcm-hook and its dependencies for exactly that Python into a build context
with the host's pip (from PyPI or pip's cache), then builds the image from
that context. dockerd is found as the docker SDK finds it (DOCKER_HOST, else
the default socket) unless --docker-host names it.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BASE = "python:3.11-slim-bookworm"
PROBE = ("import json, os, platform, sys; print(json.dumps({"
         "'version': '%d.%d' % sys.version_info[:2], 'machine': platform.machine(), "
         "'libc': os.confstr('CS_GNU_LIBC_VERSION') or ''}))")


class BuildError(Exception):
    """The image cannot be built; the message says why and what to do."""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE,
                        help=f"base image with python3 (default {DEFAULT_BASE})")
    parser.add_argument("--tag", default="kcm", help="image tag (default kcm)")
    parser.add_argument("--docker-host", help="dockerd URL (default: as docker does)")
    args = parser.parse_args(argv)
    try:
        image = build(args.base, args.tag, args.docker_host)
    except BuildError as err:
        sys.stderr.write(f"build-image: error: {err}\n")
        return 1
    print(f"built image {args.tag} ({image}) on {args.base}")
    return 0


def build(base, tag, docker_host=None):
    """Build image `tag` on `base`; return its id."""
    import docker

    client = (docker.DockerClient(base_url=docker_host) if docker_host
              else docker.from_env())
    context = tempfile.mkdtemp(prefix="kcm-image-")
    try:
        target = probe_python(client, base)
        install_site(os.path.join(context, "site"), target)
        shutil.copy(os.path.join(REPO, "Dockerfile"), context)
        try:
            image, _ = client.images.build(path=context, tag=tag, rm=True, pull=False,
                                           buildargs={"BASE": base},
                                           network_mode="none")
        except docker.errors.BuildError as err:
            raise BuildError(f"docker build failed: {err}") from err
        return image.short_id
    finally:
        shutil.rmtree(context, ignore_errors=True)
        client.close()


def probe_python(client, base):
    """{"version", "machine", "libc"} of the python3 in image `base`."""
    import docker

    try:
        out = client.containers.run(base, ["-c", PROBE], entrypoint=["python3"],
                                    remove=True, network_mode="none")
    except docker.errors.ImageNotFound:
        raise BuildError(f"base image {base} is not there and cannot be pulled: "
                         "docker pull it, or docker import one") from None
    except (docker.errors.ContainerError, docker.errors.APIError) as err:
        raise BuildError(f"base image {base} cannot run python3 ({err}); choose a "
                         "base with Python 3.9 or later") from None
    target = json.loads(out.decode().strip().splitlines()[-1])
    if not target["libc"].startswith("glibc "):
        # TODO: musl bases (Alpine) need musllinux wheels; only glibc is handled.
        raise BuildError(f"base image {base} has no glibc ({target['libc'] or 'none'})"
                         ": choose a Debian- or Ubuntu-based image")
    return target


def install_site(site, target):
    """pip-install kcm-hook and its dependencies for `target` into `site`."""
    wheels = tempfile.mkdtemp(prefix="kcm-wheel-")
    try:
        # Built from a copy: setuptools leaves build/ and *.egg-info in its tree.
        source = os.path.join(wheels, "source")
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
            ".*", "build", "dist", "*.egg-info", "__pycache__", "integration", "tests",
            "bench"))
        _pip("wheel", "--no-deps", "--wheel-dir", wheels, source)
        shutil.rmtree(source)
        [wheel] = [os.path.join(wheels, name) for name in os.listdir(wheels)]
        version = target["version"].replace(".", "")
        platforms = [f"--platform={tag}" for tag in _platforms(target)]
        _pip("install", "--target", site, "--only-binary=:all:",
             f"--python-version={target['version']}", "--implementation=cp",
             f"--abi=cp{version}", "--abi=abi3", "--abi=none", *platforms, wheel)
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    shutil.rmtree(os.path.join(site, "bin"), ignore_errors=True)


def _platforms(target):
    """The manylinux tags a glibc of that version and machine accepts, newest first."""
    machine = target["machine"]
    major, minor = (int(part) for part in target["libc"].split()[1].split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{machine}" for m, name in legacy.items() if m <= minor]
    return tags + [f"linux_{machine}"]


def _pip(*args):
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(command, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise BuildError(f"pip {args[0]} failed (exit {result.returncode}); see above")


if __name__ == "__main__":
    sys.exit(main())
