"""The installed library tree: kcm_hook and what it imports, for the host's python3.

A directory D/lib/kcm-hook-<version>-<digest>/ carries kcm_hook, the docker
SDK with the pure-Python parts of its dependencies (for the Docker label
lookup) and pyroute2 (for reconcile --watch), so the host needs no package.
The launcher (LAUNCHER) puts it first on sys.path of `python3 -I -S`. The
host's python3 compiles the tree when it is built, so that no hook start pays
for compiling and none needs to write a cache.
"""

import logging
import os
import shutil

from . import __version__
from .errors import ConfigError
from .runtime import HOOK_PATH

log = logging.getLogger(__name__)

# The first python3 on this PATH is the one the #! line names.
SEARCH_PATH = HOOK_PATH
# The docker SDK and what it imports, and pyroute2; their compiled extensions
# are left out (charset_normalizer falls back to its Python modules) and
# certifi is replaced by CERTIFI_SHIM.
VENDORED = ("docker", "requests", "urllib3", "idna", "charset_normalizer", "pyroute2")
DOCKER_NEEDS = ("requests", "urllib3", "idna", "charset_normalizer")

# D/kcm-hook and D/kcm-runc-py. One argument on the #! line: Linux passes
# everything after the interpreter as a single one.
LAUNCHER = '''\
#!{python} -IS
"""kcm-hook launcher, written by kcm-hook install."""
import os
import sys

sys.path.insert(0, {tree!r})
if os.path.basename(sys.argv[0]) in ("kcm-runc", "kcm-runc-py"):
    from kcm_hook.runtime import main
    sys.exit(main(sys.argv[1:]))
from kcm_hook.cli import entry_point
entry_point()
'''

# requests asks certifi for a CA bundle when it is imported; the host's
# bundle serves, and the real certifi is one more package to carry.
CERTIFI_SHIM = '''\
"""Stand-in for certifi in the kcm-hook library tree: the host's CA bundle."""
import os

BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
           "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem")


def where():
    return next((path for path in BUNDLES if os.path.exists(path)), BUNDLES[0])


def contents():
    with open(where(), encoding="ascii") as f:
        return f.read()
'''

PROBE = ("import sys, importlib.util; "
         "print(sys.version_info[0], sys.version_info[1], "
         "importlib.util.MAGIC_NUMBER.hex())")


class Python:
    """The interpreter the tree is built for."""

    def __init__(self, path, version, magic):
        self.path, self.version, self.magic = path, version, magic


def find_python():
    """The first python3 on the hooks' PATH, which the launcher's #! line names.

    TODO: run inside a container (install from the Docker image), this finds
    the image's python3, not the host's: the host then needs a python3 of 3.9
    or newer at the same path, and one of another version ignores the
    bytecode and compiles every module it imports into the tree at its first
    start.
    """
    import subprocess

    path = shutil.which("python3", path=SEARCH_PATH)
    if path is None:
        raise ConfigError(f"no python3 in {SEARCH_PATH}: install python3 "
                          "(3.9 or newer)")
    try:
        probe = subprocess.run([path, "-I", "-S", "-c", PROBE], capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
        major, minor, magic = probe.stdout.split()
        version = (int(major), int(minor))
    except (OSError, ValueError, subprocess.TimeoutExpired) as err:
        raise ConfigError(f"{path} does not run as python3 -I -S ({err}); "
                          "repair the host's python3") from None
    if version < (3, 9):
        raise ConfigError(f"{path} is Python {major}.{minor}: kcm-hook needs 3.9 or "
                          "newer on the host")
    return Python(path, version, bytes.fromhex(magic))


class Build:
    """The files of a tree, what it carries, and a name derived from its inputs.

    The name digests the sources, the interpreter and its bytecode version,
    not the bytecode: marshal writes the frozensets of a module's constants in
    hash order, which differs between processes.
    """

    def __init__(self, python, files, digest, packages):
        self.python = python
        self.files = files  # {relative path: bytes}, sources only
        self.packages = packages  # top-level names carried
        self.has_runtime = "kcm_hook/runtime.py" in files
        self.name = f"kcm-hook-{__version__}-{digest}"

    def launcher(self, lib):
        """The text of the launcher running the tree `lib`/name."""
        return LAUNCHER.format(python=self.python.path,
                               tree=os.path.join(lib, self.name))


def build(python, packages=None):
    """The tree for `python`, from the packages this process imports."""
    packages = packages or ("kcm_hook", *VENDORED)
    files, carried = {}, []
    for name in packages:
        found = package_files(name)
        if found is None:
            continue
        files.update(found)
        carried.append(name)
    if "kcm_hook" not in carried:
        raise ConfigError("cannot find the kcm_hook package to install")
    if "docker" in carried:
        missing = [name for name in DOCKER_NEEDS if name not in carried]
        if missing:
            raise ConfigError(f"the docker SDK needs {', '.join(missing)}, which "
                              "this Python cannot import: pip install docker")
        files["certifi/__init__.py"] = CERTIFI_SHIM.encode()
    elif "docker" in packages:
        log.warning("docker SDK not found: the installed hook cannot read Docker "
                    "labels (pip install docker, then install again)")
    if "pyroute2" in packages and "pyroute2" not in carried:
        log.warning("pyroute2 not found: the installed reconcile --watch falls back "
                    "to periodic sweeps (pip install pyroute2, then install again)")
    return Build(python, files, input_digest(python, files), carried)


def input_digest(python, files):
    import hashlib

    digest = hashlib.sha256()
    for part in (python.path.encode(), python.magic, LAUNCHER.encode()):
        digest.update(len(part).to_bytes(8, "little") + part)
    for member in sorted(files):
        for part in (member.encode(), files[member]):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()[:12]


def package_files(name):
    """{relative path: bytes} of top-level package `name`, or None if absent.

    Bytecode and compiled extensions are left out.
    """
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return files_in_dir(list(spec.submodule_search_locations)[0], name)


def files_in_dir(root, name):
    """{relative path: bytes} of the package `name` in directory `root`."""
    found = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for file_name in sorted(names):
            path = os.path.join(directory, file_name)
            member = "/".join([name, os.path.relpath(path, root)]).replace(os.sep, "/")
            if not file_name.endswith((".pyc", ".so", ".pyd")) and os.path.isfile(path):
                with open(path, "rb") as f:
                    found[member] = f.read()
    return found


def write(build, path):
    """Write the tree of `build` at `path`, compiled by its python, synced to disk.

    The bytecode is unchecked-hash based (PEP 552): no start reads a source
    to validate it.
    """
    import subprocess

    for member, data in build.files.items():
        target = os.path.join(path, *member.split("/"))
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        with open(target, "xb") as f:
            f.write(data)
    try:
        compiled = subprocess.run(
            [build.python.path, "-I", "-S", "-m", "compileall", "-q", "-j", "0",
             "--invalidation-mode", "unchecked-hash", path],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfigError(f"{build.python.path} cannot compile {path}: {err}") from None
    if compiled.returncode != 0:
        lines = (compiled.stdout + compiled.stderr).strip().splitlines()
        raise ConfigError(f"{build.python.path} cannot compile {path}: "
                          f"{lines[-1] if lines else 'no detail'}")
    sync_tree(path)


def sync_tree(path):
    """Make everything under `path` 0644 or 0755 whatever the umask, and fsync it
    so that a rename publishes it whole."""
    for directory, _, names in os.walk(path):
        for name in names + ["."]:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, 0o755 if name == "." else 0o644)
                os.fsync(fd)
            finally:
                os.close(fd)
