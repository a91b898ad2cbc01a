"""`install`: make the hooks runnable by the container runtimes of this host.

What lands where (D is --install-dir, H is --hooks-dir, by default D/hooks.d):

  D/lib/kcm-hook-<version>-<digest>.pyz  the zipapp, for the host's python3
  D/kcm-hook -> lib/...pyz               the hook and the command line
  D/kcm-runc -> lib/...pyz               the Docker runtime wrapper
  D/kcm-install.json                     what the wrapper needs to add hooks
  H/kcm-hook-prestart.json               OCI hooks files (Podman, CRI-O)
  H/kcm-hook-poststop.json

The zipapp carries kcm_hook and, for the Docker label lookup, the docker SDK
with the pure-Python parts of its dependencies; it runs under `python3 -I -S`
and needs no package on the host. zipimport re-opens its archive by path on
every import, so an archive is never rewritten in place: each build gets a
name of its own and the two symlinks are swapped to it atomically, while a
process started from the previous archive keeps importing from that one.
"""

import json
import logging
import os
import shutil
import stat
import sys

from . import __version__
from .errors import ConfigError, UsageError
from .pools import conf_dir as resolve_conf_dir
from .pools import write_atomic

log = logging.getLogger(__name__)

HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOOK_ENV = [f"PATH={HOOK_PATH}"]
# Above the 30 s default lock wait, so that a hook reports its own timeout.
HOOK_TIMEOUT = 45
HOOK_NAME, RUNTIME_NAME = "kcm-hook", "kcm-runc"
INSTALL_FILE = "kcm-install.json"
# Not D itself: Podman refuses a hooks directory holding other JSON files.
HOOKS_SUBDIR = "hooks.d"
HOOKS_FILES = {"prestart": "kcm-hook-prestart.json",
               "poststop": "kcm-hook-poststop.json"}
DOCKER_RUNTIME = "kcm"
# The docker SDK and what it imports; their compiled extensions are left out
# (charset_normalizer falls back to its Python modules) and certifi is
# replaced by CERTIFI_SHIM.
VENDORED = ("docker", "requests", "urllib3", "idna", "charset_normalizer")
DOCKER_HOST_SCHEMES = ("unix://", "tcp://", "http://", "https://")
EXEC_MODE = 0o755

# The zipapp's entry point. It is the archive's first member, stored
# uncompressed, so that its bytes and offset are the same in every build.
MAIN = '''\
"""Entry point of the kcm-hook zipapp (written by kcm-hook install)."""
import os
import sys

# Import from the archive itself, not through the symlink that named it.
sys.path[0] = os.path.realpath(sys.path[0])
if os.path.basename(sys.argv[0]) == "kcm-runc":
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


def run(install_dir, conf_dir=None, docker_config=None, docker_host=None,
        default_runtime=False, hooks_dir=None, out=None):
    """Install into `install_dir`; check everything before writing anything."""
    out = out or sys.stdout
    plan = Plan(install_dir, conf_dir, docker_config, docker_host, default_runtime,
                hooks_dir)
    python = find_python()
    archive = build_archive(python)
    if plan.docker_config and not archive.has_runtime:
        raise ConfigError("this kcm-hook has no Docker runtime wrapper "
                          "(kcm_hook.runtime): install without --docker-config")
    docker = plan.docker_change()

    for directory in plan.directories():
        prepare_dir(directory)
    written = install_archive(plan, archive)
    written += install_documents(plan, archive)
    if docker is not None:
        written += docker.write()

    report(out, plan, python, archive, docker, written)
    return 0


class Plan:
    """The checked arguments of one install."""

    def __init__(self, install_dir, conf_dir, docker_config, docker_host,
                 default_runtime, hooks_dir):
        self.dir = _absolute(install_dir, "--install-dir")
        self.lib = os.path.join(self.dir, "lib")
        self.hooks_dir = _absolute(hooks_dir, "--hooks-dir") if hooks_dir \
            else os.path.join(self.dir, HOOKS_SUBDIR)
        if self.hooks_dir == self.dir:
            raise UsageError(f"--hooks-dir={hooks_dir}: Podman and CRI-O read every "
                             f"*.json in a hooks directory, and {self.dir} also holds "
                             f"{INSTALL_FILE}; leave --hooks-dir out (it defaults to "
                             f"{os.path.join(self.dir, HOOKS_SUBDIR)}) or name another one")
        self.conf_dir = _absolute(resolve_conf_dir(conf_dir), "--conf-dir")
        self.docker_host = check_docker_host(docker_host)
        self.docker_config = _absolute(docker_config, "--docker-config") \
            if docker_config else None
        self.default_runtime = default_runtime
        if default_runtime and not docker_config:
            raise UsageError("--default-runtime needs --docker-config=<daemon.json>")
        self.hook = os.path.join(self.dir, HOOK_NAME)
        self.runtime = os.path.join(self.dir, RUNTIME_NAME)

    def directories(self):
        return [self.dir, self.lib, self.hooks_dir]

    def docker_change(self):
        if self.docker_config is None:
            return None
        return DockerConfig.load(self.docker_config).merged(
            self.runtime, self.default_runtime)


def _absolute(path, option):
    if not path or not path.isprintable() or "\n" in path:
        raise UsageError(f"{option}={path!r}: expected a directory or file path")
    return os.path.abspath(path)


def check_docker_host(url):
    """Refuse a dockerd endpoint the installed hook could not reach."""
    if url is None:
        return None
    if not url.isprintable() or any(c.isspace() for c in url) \
            or not url.startswith(DOCKER_HOST_SCHEMES) \
            or len(url) <= len(url.split("://")[0]) + 3:
        raise UsageError(f"--docker-host={url!r}: expected unix:///path/to/docker.sock "
                         "or tcp://HOST:PORT")
    if url.startswith("unix://") and not url[len("unix://"):].startswith("/"):
        raise UsageError(f"--docker-host={url!r}: a unix socket needs an absolute "
                         "path, as in unix:///var/run/docker.sock")
    return url


# -- the interpreter and the archive ---------------------------------------


class Python:
    def __init__(self, path, version, magic):
        self.path, self.version, self.magic = path, version, magic


def find_python():
    """The first python3 on the hooks' PATH, which the zipapp's #! line names."""
    import subprocess

    path = shutil.which("python3", path=HOOK_PATH)
    if path is None:
        raise ConfigError(f"no python3 in {HOOK_PATH}: install python3 (3.9 or newer)")
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
    def __init__(self, data, packages, has_runtime, compiled):
        import hashlib

        self.data = data
        self.packages = packages  # top-level names carried
        self.has_runtime = has_runtime
        self.compiled = compiled  # True when it carries bytecode for the target
        digest = hashlib.sha256(data).hexdigest()[:12]
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
    return Archive(data, carried, "kcm_hook/runtime.py" in files, compiled)


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


# -- writing ----------------------------------------------------------------


def prepare_dir(path):
    """Create `path`, or refuse it when someone else could change what root runs."""
    try:
        os.makedirs(path, mode=EXEC_MODE, exist_ok=True)
        st = os.stat(path)
    except OSError as err:
        raise ConfigError(f"cannot create {path}: {err.strerror}") from err
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a directory")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(f"{path} is owned by uid {st.st_uid} with mode "
                          f"{stat.S_IMODE(st.st_mode):o}: the hooks run as root from "
                          f"it, so it must belong to uid {os.geteuid()} and not be "
                          f"writable by group or others (chmod go-w {path})")


def install_archive(plan, archive):
    """Write the archive under a name of its own, then point the symlinks at it."""
    written = []
    path = os.path.join(plan.lib, archive.name)
    if _read_bytes(path) != archive.data:
        write_atomic(path, archive.data, mode=EXEC_MODE, sync=True)
        written.append(path)
    previous = _link_target(plan.hook)
    target = os.path.join("lib", archive.name)
    links = [plan.hook] + ([plan.runtime] if archive.has_runtime else [])
    for link in links:
        if _link_target(link) != target:
            replace_symlink(target, link)
            written.append(f"{link} -> {target}")
    written += prune_archives(plan.lib, {archive.name, os.path.basename(previous or "")})
    return written


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _link_target(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def replace_symlink(target, path):
    """Make `path` a symlink to `target` in one rename."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.rename(tmp, path)
    except OSError as err:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise ConfigError(f"cannot replace {path}: {err.strerror}") from err


def prune_archives(lib, keep):
    """Remove the archives of older installs: all but the new and the previous.

    TODO: an archive two installs old is removed even while a hook started
    from it still runs; two re-installs within one hook's life can fail it.
    """
    removed = []
    for name in sorted(os.listdir(lib)):
        if name.startswith("kcm-hook-") and name.endswith(".pyz") and name not in keep:
            path = os.path.join(lib, name)
            try:
                os.unlink(path)
                removed.append(f"removed {path}")
            except OSError as err:
                log.warning("cannot remove old archive %s: %s", path, err.strerror)
    return removed


def install_documents(plan, archive):
    """kcm-install.json for the wrapper and the OCI hooks files."""
    documents = [(os.path.join(plan.dir, INSTALL_FILE), install_document(plan))]
    for stage, name in HOOKS_FILES.items():
        documents.append((os.path.join(plan.hooks_dir, name),
                          hooks_document(stage, plan.hook, plan.conf_dir)))
    written = []
    for path, doc in documents:
        text = json.dumps(doc, indent=2) + "\n"
        if _read_bytes(path) != text.encode():
            write_atomic(path, text)
            written.append(path)
    return written


def install_document(plan):
    """What the runtime wrapper reads to build the hook entries it adds."""
    return {"conf_dir": plan.conf_dir, "docker_host": plan.docker_host,
            "hook": plan.hook, "runtime": None}


def hooks_document(stage, hook, conf_dir):
    """An OCI hooks file (format 1.0.0) running `hook stage` for every container.

    Every container, so that those naming no pool are kept on infra and off
    the dataplane cores. No --docker-host: Podman and CRI-O containers are not
    dockerd's, and their pool comes from annotations or KCM_POOL.
    """
    return {"version": "1.0.0",
            "hook": {"path": hook,
                     "args": [HOOK_NAME, stage, f"--conf-dir={conf_dir}"],
                     "env": list(HOOK_ENV), "timeout": HOOK_TIMEOUT},
            "when": {"always": True},
            "stages": [stage]}


def installed(directory):
    """The kcm-install.json of `directory` as a dict."""
    path = os.path.join(directory, INSTALL_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: run kcm-hook install "
                          f"--install-dir={directory}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path} ({err}): run kcm-hook install "
                          f"--install-dir={directory} again") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("conf_dir"), str):
        raise ConfigError(f"{path} has no conf_dir: run kcm-hook install again")
    return doc


# -- daemon.json --------------------------------------------------------------


class DockerConfig:
    """dockerd's daemon.json as found, and the change install makes to it."""

    def __init__(self, path, text, mode):
        self.path, self.text, self.mode = path, text, mode
        self.new_text, self.changes, self.backup = None, [], None

    @classmethod
    def load(cls, path):
        """Read and parse `path`; refuse what dockerd could not read either."""
        path = os.path.realpath(path)
        try:
            with open(path, "rb") as f:
                data, mode = f.read(), stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        except FileNotFoundError:
            if not os.path.isdir(os.path.dirname(path)):
                raise ConfigError(f"{os.path.dirname(path)} does not exist: is Docker "
                                  "installed? Check --docker-config") from None
            return cls(path, None, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror}") from err
        try:
            return cls(path, data.decode("utf-8"), mode)
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text; fix it (left untouched)") \
                from None

    def document(self):
        if self.text is None or not self.text.strip():
            return {}
        try:
            doc = json.loads(self.text)
        except ValueError as err:
            raise ConfigError(f"{self.path} is not valid JSON ({err}); fix it, then "
                              "run install again (it was left untouched)") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.path} holds a JSON {type(doc).__name__}, not an "
                              "object; fix it (left untouched)")
        return doc

    def merged(self, runtime_path, default_runtime):
        """Add runtime kcm (and default-runtime); keep every other key."""
        doc = self.document()
        runtimes = doc.setdefault("runtimes", {})
        if not isinstance(runtimes, dict):
            raise ConfigError(f"{self.path}: 'runtimes' is not an object; fix it "
                              "(left untouched)")
        self.changes += _set_runtime(runtimes, runtime_path)
        if default_runtime and doc.get("default-runtime") != DOCKER_RUNTIME:
            was = doc.get("default-runtime")
            doc["default-runtime"] = DOCKER_RUNTIME
            self.changes.append(f'set default-runtime to "{DOCKER_RUNTIME}"'
                                + (f" (was {json.dumps(was)})" if was else ""))
        if self.changes:
            self.new_text = json.dumps(doc, indent=_indent(self.text),
                                       ensure_ascii=False) + "\n"
        return self

    def write(self):
        """Back the file up, then replace it; return what was written."""
        if self.new_text is None:
            return []
        written = []
        if self.text is not None:
            self.backup = _backup_path(self.path)
            write_atomic(self.backup, self.text, mode=self.mode)
            written.append(self.backup)
        write_atomic(self.path, self.new_text, mode=self.mode)
        return written + [self.path]


def _set_runtime(runtimes, runtime_path):
    entry = runtimes.get(DOCKER_RUNTIME)
    if isinstance(entry, dict) and entry.get("path") == runtime_path:
        return []
    if isinstance(entry, dict):
        runtimes[DOCKER_RUNTIME] = {**entry, "path": runtime_path}
        return [f"changed runtimes.{DOCKER_RUNTIME}.path from "
                f"{json.dumps(entry.get('path'))} to {json.dumps(runtime_path)}"]
    runtimes[DOCKER_RUNTIME] = {"path": runtime_path}
    return [f'added runtimes.{DOCKER_RUNTIME} = {{"path": {json.dumps(runtime_path)}}}']


def _indent(text):
    """The indent width of the first indented line of `text`, else 2."""
    for line in (text or "").splitlines():
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            return len(line) - len(stripped)
    return 2


def _backup_path(path):
    import time

    base = f"{path}.kcm-backup-{time.strftime('%Y%m%dT%H%M%S')}"
    candidate, n = base, 1
    while os.path.lexists(candidate):
        candidate, n = f"{base}.{n}", n + 1
    return candidate


# -- telling the user ---------------------------------------------------------


def report(out, plan, python, archive, docker, written):
    """Print what was written and what the user still has to do."""
    bytecode = "with bytecode" if archive.compiled else \
        "source only: built by another Python version, so it starts slower"
    print(f"kcm-hook {__version__} for {python.path} "
          f"(Python {python.version[0]}.{python.version[1]}, {bytecode}); "
          f"carries {', '.join(archive.packages)}", file=out)
    for line in written or ["nothing: every file was already up to date"]:
        print(f"  wrote {line}" if not line.startswith("removed ") else f"  {line}",
              file=out)
    if docker is not None:
        for change in docker.changes or ["already registers the kcm runtime"]:
            print(f"  {docker.path}: {change}", file=out)
        if docker.backup:
            print(f"  previous {os.path.basename(docker.path)} saved as "
                  f"{docker.backup}", file=out)
    print("still to do:", file=out)
    for step in todo(plan, archive, docker):
        print(f"  - {step}", file=out)


def todo(plan, archive, docker):
    steps = []
    if not os.path.isdir(os.path.join(plan.conf_dir, "pools")):
        steps.append(f"{plan.conf_dir} holds no pools yet: kcm-hook init "
                     f"--conf-dir={plan.conf_dir}")
    if docker is not None and docker.changes:
        steps.append("dockerd reads daemon.json only when it starts or reloads: "
                     "systemctl reload docker (or kill -HUP the dockerd process)")
    elif docker is None and archive.has_runtime:
        steps.append(f"Docker: add {{\"runtimes\": {{\"{DOCKER_RUNTIME}\": {{\"path\": "
                     f"\"{plan.runtime}\"}}}}}} to daemon.json, or run install again "
                     "with --docker-config=/etc/docker/daemon.json, then reload dockerd")
    if archive.has_runtime:
        steps.append(f"Docker: docker run --runtime {DOCKER_RUNTIME} --label "
                     "kcm.pool=dataplane IMAGE")
    steps.append(f"Podman: podman --hooks-dir={plan.hooks_dir} run --annotation "
                 f"kcm.pool=dataplane IMAGE, or add \"{plan.hooks_dir}\" to hooks_dir "
                 "in [engine] of containers.conf")
    steps.append(f"CRI-O: add \"{plan.hooks_dir}\" to hooks_dir in [crio.runtime] of "
                 "crio.conf, then restart crio")
    return steps
