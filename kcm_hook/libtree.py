"""The kcm-hook zipapp: one file that runs under the host's `python3 -I -S`.

It carries kcm_hook and, for the Docker label lookup, the docker SDK with the
pure-Python parts of its dependencies, so the host needs no package. Modules
are stored with bytecode for the target interpreter when this process runs
the same bytecode version (zipimport cannot write a cache, and compiling the
docker SDK on every container start would cost more than the lookup itself).
"""

import logging
import os
import shutil

from . import __version__
from .errors import ConfigError

log = logging.getLogger(__name__)

# The first python3 on this PATH is the one the #! line names.
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The docker SDK and what it imports; their compiled extensions are left out
# (charset_normalizer falls back to its Python modules) and certifi is
# replaced by CERTIFI_SHIM.
VENDORED = ("docker", "requests", "urllib3", "idna", "charset_normalizer")

# The zipapp's entry point. It is the archive's first member, stored
# uncompressed, so that its bytes and offset are the same in every build.
MAIN = '''\
"""Entry point of the kcm-hook zipapp (written by kcm-hook install)."""
import os
import sys

# Import from the archive itself, not through the symlink that named it.
sys.path[0] = os.path.realpath(sys.path[0])
if os.path.basename(sys.argv[0]) in ("kcm-runc", "kcm-runc-py"):
    from kcm_hook.runtime import main
    sys.exit(main(sys.argv[1:]))
from kcm_hook.cli import entry_point
entry_point()
'''

# requests asks certifi for a CA bundle when it is imported; the real certifi
# would extract its bundle from the zipapp to a temporary file on every run.
CERTIFI_SHIM = '''\
"""Stand-in for certifi in the kcm-hook zipapp: the host's CA bundle."""
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
    """The interpreter the zipapp is built for."""

    def __init__(self, path, version, magic):
        self.path, self.version, self.magic = path, version, magic


def find_python():
    """The first python3 on the hooks' PATH, which the zipapp's #! line names.

    TODO: run inside a container (install from the Docker image), this finds
    the image's python3, not the host's: the host then needs a python3 of 3.9
    or newer at the same path, and one of another version ignores the
    bytecode and compiles every module on every start.
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


class Archive:
    """A built zipapp: its bytes, what it carries, and a name derived from its inputs.

    The name digests the sources, the #! line and the bytecode version, not
    the bytes: marshal writes the frozensets of a module's constants in hash
    order, which differs between processes, so two builds of the same code
    are equivalent without being identical.
    """

    def __init__(self, data, digest, packages, has_runtime, compiled):
        self.data = data
        self.packages = packages  # top-level names carried
        self.has_runtime = has_runtime
        self.compiled = compiled  # True when it carries bytecode for the target
        self.name = f"kcm-hook-{__version__}-{digest}.pyz"


def build_archive(python, packages=None):
    """The zipapp for `python`, from the packages this process imports."""
    import importlib.util

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
    missing = [name for name in VENDORED if name in packages and name not in carried]
    if "docker" in carried:
        if missing:
            raise ConfigError(f"the docker SDK needs {', '.join(missing)}, which "
                              "this Python cannot import: pip install docker")
        files["certifi/__init__.py"] = CERTIFI_SHIM.encode()
    elif "docker" in packages:
        log.warning("docker SDK not found: the installed hook cannot read Docker "
                    "labels (pip install docker, then install again)")

    compiled = python.magic == importlib.util.MAGIC_NUMBER
    data = zip_bytes(python.path, files, compiled)
    digest = input_digest(python, files, compiled)
    return Archive(data, digest, carried, "kcm_hook/runtime.py" in files, compiled)


def input_digest(python, files, compiled):
    import hashlib

    digest = hashlib.sha256()
    magic = python.magic if compiled else b""
    for part in (python.path.encode(), magic, MAIN.encode()):
        digest.update(len(part).to_bytes(8, "little") + part)
    for member in sorted(files):
        for part in (member.encode(), files[member]):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()[:12]


def package_files(name):
    """{member name: bytes} of top-level package `name`, or None if absent.

    Reads a directory, or the zipapp this process runs from. Bytecode and
    compiled extensions are left out.
    """
    import importlib.util
    import zipimport

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    if isinstance(spec.loader, zipimport.zipimporter):
        return _files_in_zip(spec.loader.archive, name)
    return _files_in_dir(list(spec.submodule_search_locations)[0], name)


def _wanted(member):
    parts = member.split("/")
    return "__pycache__" not in parts and not member.endswith((".pyc", ".so", ".pyd"))


def _files_in_dir(root, name):
    found = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for file_name in names:
            path = os.path.join(directory, file_name)
            member = "/".join([name, os.path.relpath(path, root)]).replace(os.sep, "/")
            if _wanted(member) and os.path.isfile(path):
                with open(path, "rb") as f:
                    found[member] = f.read()
    return found


def _files_in_zip(archive, name):
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        return {member: zf.read(member) for member in zf.namelist()
                if member.startswith(name + "/") and not member.endswith("/")
                and _wanted(member)}


def zip_bytes(python_path, files, compiled):
    """The archive: a #! line, __main__.py, then each file (and its bytecode)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    buffer.write(f"#!{python_path} -IS\n".encode())
    with zipfile.ZipFile(buffer, "w") as zf:
        _add(zf, "__main__.py", MAIN.encode(), zipfile.ZIP_STORED)
        for member in sorted(files):
            _add(zf, member, files[member], zipfile.ZIP_DEFLATED)
            if compiled and member.endswith(".py"):
                _add(zf, member + "c", pyc_bytes(member, files[member]),
                     zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _add(zf, member, data, compression):
    import zipfile

    # A fixed date keeps the archive, and so its name, the same for the same code.
    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def pyc_bytes(member, source):
    """Unchecked hash-based bytecode (PEP 552): zipimport cannot write a cache."""
    import importlib.util
    import marshal
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = compile(source, member, "exec", dont_inherit=True, optimize=0)
    flags = (0b01).to_bytes(4, "little")  # hash-based, source not checked
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) \
        + marshal.dumps(code)
