"""kcm-runc: the OCI runtime Docker calls in place of runc.

On `create` (and `run`, its create-and-start form) it adds kcm-hook's prestart
and poststop hooks to the bundle's config.json, once, writes it atomically and
execs the real runtime with the same arguments. Every other subcommand (start,
state, kill, delete, features, ...) is exec'd unchanged at once.

Docker makes four or more runtime calls per container and Python takes 20 to
35 ms to start, runc 5. So an install puts a POSIX sh front, `front_script()`,
at D/kcm-runc: it execs runc itself for every call but create and run while
the settings leave the runtime to the default, and hands everything else to
this module's `main` at D/kcm-runc-py. Installed as a Python package,
`kcm-runc` is `main` alone.

Settings come from kcm-install.json, written by `kcm-hook install` beside this
executable, or from the file KCM_RUNC_CONFIG names:
  {"conf_dir": C, "docker_host": URL or null, "hook": PATH, "runtime": PATH or null}
Without such a file: conf_dir from KCM_CONF_DIR (default /etc/kcm), docker_host
from KCM_DOCKER_HOST (default unix:///var/run/docker.sock), the hook from
KCM_HOOK, else kcm-hook beside this executable, else kcm-hook in PATH. The real
runtime is the file's `runtime`, else KCM_RUNTIME, else runc in PATH.
"""

import os
import sys

PROG = "kcm-runc"
FRONT_NAME = "kcm-runc"
CONFIG_NAME = "kcm-install.json"
CONFIG_ENV = "KCM_RUNC_CONFIG"
RUNTIME_ENV = "KCM_RUNTIME"
DEFAULT_RUNTIME = "runc"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
CREATING = ("create", "run")
STAGES = ("prestart", "poststop")
# runc's global flags that take a value (runc --help, runc 1.1); the others
# (--debug, --systemd-cgroup, --help, --version) are booleans.
GLOBAL_VALUE_FLAGS = frozenset({"root", "log", "log-format", "criu", "rootless"})
# Value flags of `runc create` and `runc run`.
CREATE_VALUE_FLAGS = frozenset({"bundle", "b", "console-socket", "pid-file",
                                "preserve-fds"})
# The hooks run with exactly the environment given here (runtime spec,
# "POSIX-platform Hooks"), not Docker's: PATH is explicit, and these pass
# through from the wrapper's environment when set, for troubleshooting.
# The PATH and timeout of every hook kcm installs, here because create must
# not import install (14 ms); install and libtree take them from here.
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOOK_ENV_PASSED = ("KCM_LOG_LEVEL", "KCM_LOG_FILE", "KCM_LOCK_TIMEOUT")
# Seconds before runc kills a hook: above the default lock wait (30 s), so
# that a hook reports its own timeout.
HOOK_TIMEOUT = 45


class Invocation:
    """What a runc command line asks for: the subcommand, its bundle, the log."""

    def __init__(self, command=None, args=(), log=None, log_format=None):
        self.command = command
        self.args = list(args)
        self.log = log
        self.log_format = log_format

    def creates(self):
        return self.command in CREATING

    def bundle(self):
        """The bundle directory of a create or run: its flag, else the working one."""
        return _bundle(self.args)


def main(argv=None, executable=None, environ=None):
    """Run as the OCI runtime: inject the hooks on create, then exec the real one."""
    argv = sys.argv[1:] if argv is None else list(argv)
    executable = executable or sys.argv[0]
    environ = os.environ if environ is None else environ
    invocation = parse_argv(argv)
    try:
        doc, source = read_settings(executable, environ)
        runtime = real_runtime(doc, source, executable, environ)
        if invocation.creates():
            settings = hook_settings(doc, source, executable, environ)
            inject_hooks(invocation.bundle(), settings)
        _exec(runtime, argv)
    except Exception as err:  # every failure becomes one line, never a traceback
        return report(err, invocation)
    return 0


def parse_argv(argv):
    """Read runc's command line: its global flags, the subcommand and its args."""
    invocation = Invocation()
    rest = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest = argv[i + 1:]
            break
        if not _is_flag(arg):
            rest = argv[i:]
            break
        name, value, i = _flag(argv, i, GLOBAL_VALUE_FLAGS)
        if name == "log":
            invocation.log = value
        elif name == "log-format":
            invocation.log_format = value
    if not rest:
        return invocation
    invocation.command, invocation.args = rest[0], rest[1:]
    return invocation


def _bundle(args):
    """The bundle of create/run args; runc reorders flags after the id too."""
    bundle = None
    i = 0
    while i < len(args):
        if args[i] == "--":
            break
        if not _is_flag(args[i]):
            i += 1
            continue
        name, value, i = _flag(args, i, CREATE_VALUE_FLAGS)
        if name in ("bundle", "b"):
            if not value:
                from .errors import UsageError
                raise UsageError(f"{args[i - 1]} needs a bundle directory")
            bundle = value
    return bundle or os.getcwd()


def _is_flag(arg):
    return arg.startswith("-") and arg != "-"


def _flag(args, i, value_flags):
    """(name, value, next index) of the flag at args[i]: -f, --f, -f=v, --f=v, -f v.

    A value flag with nothing after it gets the value None: runc refuses it.
    """
    name, eq, value = args[i].lstrip("-").partition("=")
    if eq or name not in value_flags:
        return name, value if eq else None, i + 1
    if i + 1 >= len(args):
        return name, None, i + 1
    return name, args[i + 1], i + 2


def read_settings(executable, environ):
    """(settings dict, its path) from KCM_RUNC_CONFIG or beside `executable`."""
    path = environ.get(CONFIG_ENV)
    if not path:
        path = os.path.join(os.path.dirname(os.path.abspath(executable)), CONFIG_NAME)
        if not os.path.exists(path):
            return {}, None
    import json

    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(1 << 20).decode("utf-8"))
    except FileNotFoundError:
        raise _config_error(f"{CONFIG_ENV}={path} does not exist: point it at the "
                            f"{CONFIG_NAME} that kcm-hook install wrote") from None
    except OSError as err:
        raise _config_error(f"cannot read {path}: {err.strerror}") from err
    except (UnicodeDecodeError, ValueError) as err:
        raise _config_error(f"{path} is not JSON ({err}); re-run kcm-hook install "
                            "to rewrite it") from None
    if not isinstance(doc, dict):
        raise _config_error(f"{path} is not a JSON object; re-run kcm-hook install")
    return doc, path


def real_runtime(doc, source, executable, environ):
    """The absolute path of the runtime to exec; refuse this wrapper itself."""
    name = _setting(doc, source, "runtime")
    origin = f"'runtime' in {source}"
    if name is None and environ.get(RUNTIME_ENV):
        name, origin = environ[RUNTIME_ENV], RUNTIME_ENV
    if name is None:
        name, origin = DEFAULT_RUNTIME, "the default"
    path = _which(name, environ)
    if path is None:
        raise _config_error(
            f"cannot find the real runtime {name!r} ({origin}) in "
            f"PATH={environ.get('PATH', '')}: install runc, or name the runtime "
            f"as 'runtime' in {CONFIG_NAME} or in {RUNTIME_ENV}")
    front = os.path.join(os.path.dirname(os.path.abspath(executable)), FRONT_NAME)
    itself = {os.path.realpath(executable), os.path.realpath(front)}
    if os.path.realpath(path) in itself:
        raise _config_error(f"the real runtime {path} ({origin}) is kcm-runc itself: "
                            "name runc there instead")
    return path


class HookSettings:
    """Where the hook program is and what it is told: conf dir and dockerd."""

    def __init__(self, hook, conf_dir, docker_host, env):
        self.hook = hook
        self.conf_dir = conf_dir
        self.docker_host = docker_host
        self.env = env

    def entry(self, stage):
        """The OCI hook entry for `stage`."""
        args = [os.path.basename(self.hook), stage, f"--conf-dir={self.conf_dir}"]
        if stage == "prestart":
            args.append(f"--docker-host={self.docker_host}")
        return {"path": self.hook, "args": args, "env": list(self.env),
                "timeout": HOOK_TIMEOUT}


def hook_settings(doc, source, executable, environ):
    """The HookSettings from the settings file, else the environment and defaults."""
    from .pools import DEFAULT_CONF_DIR

    conf_dir = (_setting(doc, source, "conf_dir") or environ.get("KCM_CONF_DIR")
                or DEFAULT_CONF_DIR)
    docker_host = (_setting(doc, source, "docker_host")
                   or environ.get("KCM_DOCKER_HOST") or DEFAULT_DOCKER_HOST)
    hook = _setting(doc, source, "hook") or environ.get("KCM_HOOK")
    if not hook:
        beside = os.path.join(os.path.dirname(os.path.abspath(executable)), "kcm-hook")
        hook = beside if os.access(beside, os.X_OK) else "kcm-hook"
    path = _which(hook, environ)
    if path is None:
        raise _config_error(f"cannot find the hook program {hook!r}: name it as "
                            f"'hook' in {source or CONFIG_NAME} or in KCM_HOOK")
    env = [f"PATH={HOOK_PATH}"] + [f"{key}={environ[key]}" for key in HOOK_ENV_PASSED
                                   if environ.get(key)]
    return HookSettings(path, os.path.abspath(conf_dir), docker_host, env)


def inject_hooks(bundle, settings):
    """Add the kcm prestart and poststop hooks to bundle/config.json unless present.

    The document is kept as loaded, so fields kcm-hook does not know survive;
    it is written aside and renamed over the original. Returns True if changed.
    """
    import json

    from .errors import StateError
    from .oci import read_config
    from .pools import write_atomic

    path = os.path.join(bundle, "config.json")
    config = read_config(bundle)
    hooks = config.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise StateError(f"{path}: 'hooks' is not an object")
    changed = False
    for stage in STAGES:
        entries = hooks.setdefault(stage, [])
        if not isinstance(entries, list):
            raise StateError(f"{path}: 'hooks.{stage}' is not a list")
        if not any(_is_ours(entry, settings.hook, stage) for entry in entries):
            entries.append(settings.entry(stage))
            changed = True
    if changed:
        mode = os.stat(path).st_mode & 0o7777
        write_atomic(path, json.dumps(config), mode=mode)
    return changed


def _is_ours(entry, hook, stage):
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return False
    args = entry.get("args")
    return (os.path.normpath(entry["path"]) == os.path.normpath(hook)
            and isinstance(args, list) and args[1:2] == [stage])


def _setting(doc, source, key):
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _config_error(f"{source}: {key!r} must be a non-empty string or null; "
                            "re-run kcm-hook install")
    return value


def _which(name, environ):
    """`name` if it is a path to an executable, else its first match in PATH."""
    if "/" in name:
        return os.path.abspath(name) if os.access(name, os.X_OK) else None
    for directory in environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


def _exec(runtime, argv):
    try:
        os.execv(runtime, [runtime, *argv])
    except OSError as err:
        raise _config_error(f"cannot execute the real runtime {runtime}: "
                            f"{err.strerror}") from err


def _config_error(message):
    from .errors import ConfigError
    return ConfigError(message)


def report(err, invocation):
    """Say why on stderr and in runc's --log (Docker shows it); return the code."""
    from .errors import EXIT_ERROR, KcmError

    if isinstance(err, KcmError):
        message, code = str(err), err.exit_code
    else:
        message, code = f"internal error: {type(err).__name__}: {err}", EXIT_ERROR
    message = " ".join(message.split("\n"))
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    if invocation.log:
        _log_line(invocation.log, invocation.log_format, f"{PROG}: {message}")
    return code


def _log_line(path, log_format, message):
    """Append one error line to runc's log in its format (json, else logrus text)."""
    import json
    import time

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if log_format == "json":
        line = json.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f"time={json.dumps(now)} level=error msg={json.dumps(message)}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError as err:
        sys.stderr.write(f"{PROG}: error: cannot append to the log {path}: "
                         f"{err.strerror}\n")


def front_script():
    """The text of the sh front that an install puts at D/kcm-runc."""
    from importlib import resources

    return resources.files(__package__).joinpath("data", "kcm-runc.sh").read_text()


def entry_point():
    sys.exit(main())
