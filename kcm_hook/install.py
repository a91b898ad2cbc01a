"""`install`: make the hooks runnable by the container runtimes of this host.

What lands where (D is --install-dir, H is --hooks-dir, by default D/hooks.d):

  D/lib/kcm-hook-<version>-<digest>/  the library tree (see libtree.py)
  D/kcm-hook                          launcher: the hooks and the command line
  D/kcm-runc                          the Docker runtime wrapper's sh front
  D/kcm-runc-py                       launcher: the runtime wrapper (runtime.py)
  D/kcm-install.json                  what the wrapper needs to add hooks
  H/kcm-hook-prestart.json            OCI hooks files (Podman, CRI-O)
  H/kcm-hook-poststop.json

A hook imports modules from its tree for as long as it runs, so a tree is
never changed once in place: each build is written aside, renamed to a name
of its own, and then each launcher is replaced in one rename, while a process
started from the previous tree keeps importing from that one.
"""

import json
import logging
import os
import shutil
import stat
import sys

from . import __version__, libtree, procfs
from .daemon_json import DOCKER_RUNTIME, DockerConfig
from .errors import ConfigError, UsageError
from .libtree import find_python
from .pools import TEMPORARY, write_atomic
from .pools import conf_dir as resolve_conf_dir
from .runtime import HOOK_PATH, HOOK_TIMEOUT

log = logging.getLogger(__name__)

HOOK_ENV = [f"PATH={HOOK_PATH}"]
HOOK_NAME, RUNTIME_NAME, RUNTIME_PY_NAME = "kcm-hook", "kcm-runc", "kcm-runc-py"
INSTALL_FILE = "kcm-install.json"
# Not D itself: Podman refuses a hooks directory holding other JSON files.
HOOKS_SUBDIR = "hooks.d"
HOOKS_FILES = {"prestart": "kcm-hook-prestart.json",
               "poststop": "kcm-hook-poststop.json"}
DOCKER_HOST_SCHEMES = ("unix://", "tcp://", "http://", "https://")
EXEC_MODE = 0o755


def run(install_dir, conf_dir=None, docker_config=None, docker_host=None,
        default_runtime=False, hooks_dir=None, out=None):
    """Install into `install_dir`; check everything before writing anything."""
    out = out or sys.stdout
    plan = Plan(install_dir, conf_dir, docker_config, docker_host, default_runtime,
                hooks_dir)
    python = find_python()
    build = libtree.build(python)
    if plan.docker_config and not build.has_runtime:
        raise ConfigError("this kcm-hook has no Docker runtime wrapper "
                          "(kcm_hook.runtime): install without --docker-config")
    docker = plan.docker_change()

    for directory in plan.directories():
        prepare_dir(directory)
    written = install_build(plan, build)
    written += install_documents(plan)
    if docker is not None:
        written += docker.write()

    report(out, plan, python, build, docker, written)
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
                             f"{os.path.join(self.dir, HOOKS_SUBDIR)}) or name another "
                             "one")
        self.conf_dir = _absolute(resolve_conf_dir(conf_dir), "--conf-dir")
        self.docker_host = check_docker_host(docker_host)
        self.docker_config = _absolute(docker_config, "--docker-config") \
            if docker_config else None
        self.default_runtime = default_runtime
        if default_runtime and not docker_config:
            raise UsageError("--default-runtime needs --docker-config=<daemon.json>")
        self.hook = os.path.join(self.dir, HOOK_NAME)
        self.runtime = os.path.join(self.dir, RUNTIME_NAME)
        self.runtime_py = os.path.join(self.dir, RUNTIME_PY_NAME)

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


def install_build(plan, build):
    """Put the tree in place under its own name, then point the launchers at it.

    A tree already there under that name is the same build and is kept:
    a process may be importing from it.
    """
    written = []
    tree = os.path.join(plan.lib, build.name)
    if not os.path.isdir(tree):
        write_tree(build, tree)
        written.append(f"wrote {tree}")
    in_use = trees_in_use(plan)
    text = build.launcher(plan.lib)
    launchers = [plan.hook] + ([plan.runtime_py] if build.has_runtime else [])
    for launcher in launchers:
        if os.path.islink(launcher) or _read_bytes(launcher) != text.encode():
            write_atomic(launcher, text, mode=EXEC_MODE, sync=True)
            written.append(f"wrote {launcher}")
    if build.has_runtime:
        written += install_runtime_front(plan.runtime)
    written += prune_trees(plan.lib, in_use | {build.name})
    return written


def write_tree(build, tree):
    """Write the tree aside, then rename it to `tree` whole."""
    directory, name = os.path.split(tree)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")  # see TEMPORARY
    try:
        _remove(tmp)
        libtree.write(build, tmp)
        os.rename(tmp, tree)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        _remove(tmp, quietly=True)
        raise ConfigError(f"cannot write {tree}: {err.strerror}") from err
    except BaseException:
        _remove(tmp, quietly=True)
        raise


def trees_in_use(plan):
    """The names in D/lib the current launchers (or older symlinks) run."""
    names = set()
    for launcher in (plan.hook, plan.runtime_py):
        if os.path.islink(launcher):
            names.add(os.path.basename(os.readlink(launcher)))
        else:
            text = (_read_bytes(launcher) or b"")[:4096].decode("utf-8", "replace")
            names.update(name for name in _lib_entries(plan.lib)
                         if repr(os.path.join(plan.lib, name)) in text)
    return names


def _lib_entries(lib):
    try:
        return [name for name in os.listdir(lib) if name.startswith("kcm-hook-")]
    except OSError:
        return []


def install_runtime_front(path):
    """The sh front of kcm-runc (see runtime.py), replacing a file or symlink."""
    from .runtime import front_script

    text = front_script()
    if os.path.islink(path) or _read_bytes(path) != text.encode():
        write_atomic(path, text, mode=EXEC_MODE)
        return [f"wrote {path}"]
    return []


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _remove(path, quietly=False):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        if not quietly:
            raise


def prune_trees(lib, keep):
    """Remove older trees (and zipapps), keeping `keep`, and what a killed install left.

    `keep` is the new tree and the one the launchers ran before this install.

    TODO: a tree two installs old is removed even while a hook started
    from it still runs; two re-installs within one hook's life can fail it.
    """
    removed = []
    for name in sorted(os.listdir(lib)):
        match = TEMPORARY.fullmatch(name)
        stale = match and match["name"].startswith("kcm-hook-") \
            and procfs.start_time(int(match["pid"])) is None
        if stale or (name.startswith("kcm-hook-") and name not in keep):
            path = os.path.join(lib, name)
            try:
                _remove(path)
                removed.append(f"removed {path}")
            except OSError as err:
                log.warning("cannot remove old tree %s: %s", path, err.strerror)
    return removed


def install_documents(plan):
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
            written.append(f"wrote {path}")
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


# -- telling the user ---------------------------------------------------------


def report(out, plan, python, build, docker, written):
    """Print what was written and what the user still has to do."""
    print(f"kcm-hook {__version__} for {python.path} "
          f"(Python {python.version[0]}.{python.version[1]}); "
          f"carries {', '.join(build.packages)}", file=out)
    for line in written or ["wrote nothing: every file was already up to date"]:
        print(f"  {line}", file=out)
    if docker is not None:
        for change in docker.changes or ["already registers the kcm runtime"]:
            print(f"  {docker.path}: {change}", file=out)
        if docker.backup:
            print(f"  previous {os.path.basename(docker.path)} saved as "
                  f"{docker.backup}", file=out)
    print("still to do:", file=out)
    for step in todo(plan, build, docker):
        print(f"  - {step}", file=out)


def todo(plan, build, docker):
    steps = []
    if not os.path.isdir(os.path.join(plan.conf_dir, "pools")):
        steps.append(f"{plan.conf_dir} holds no pools yet: kcm-hook init "
                     f"--conf-dir={plan.conf_dir}")
    if docker is not None and docker.changes:
        steps.append("dockerd reads daemon.json only when it starts or reloads: "
                     "systemctl reload docker (or kill -HUP the dockerd process)")
    elif docker is None and build.has_runtime:
        steps.append(f"Docker: add {{\"runtimes\": {{\"{DOCKER_RUNTIME}\": {{\"path\": "
                     f"\"{plan.runtime}\"}}}}}} to daemon.json, or run install again "
                     "with --docker-config=/etc/docker/daemon.json; then reload "
                     "dockerd")
    if build.has_runtime:
        steps.append(f"Docker: docker run --runtime {DOCKER_RUNTIME} --label "
                     "kcm.pool=dataplane IMAGE")
    steps.append(f"Podman: podman --hooks-dir={plan.hooks_dir} run --annotation "
                 f"kcm.pool=dataplane IMAGE, or add \"{plan.hooks_dir}\" to hooks_dir "
                 "in [engine] of containers.conf")
    steps.append(f"CRI-O: add \"{plan.hooks_dir}\" to hooks_dir in [crio.runtime] of "
                 "crio.conf, then restart crio")
    return steps
