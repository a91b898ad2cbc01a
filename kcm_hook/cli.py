"""The kcm-hook (and kcm) command line: parse, dispatch, report.

Exit codes: 0 success; 1 an operational error (exhausted pool, lock timeout,
bad configuration or state); 2 bad usage; `isolate` returns its command's.
"""

import os
import sys
from types import SimpleNamespace

from . import __version__, logs
from .errors import EXIT_ERROR, EXIT_SIGPIPE, KcmError, UsageError

log = logs.get_logger("kcm_hook")
HOOK_OPTIONS = {"prestart": ("--conf-dir", "--docker-host"),
                "poststop": ("--conf-dir",)}
# KCM_LOG_LEVEL values under which a hook logs nothing below a warning.
QUIET_LEVELS = {"WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}

USAGE = """\
kcm (-h | --help)
  kcm --version
  kcm init [--conf-dir=<dir>] [--num-dp-cores=<num>] [--num-cp-cores=<num>]
           [--overwrite]
  kcm (describe | reconcile) [--conf-dir=<dir>]
  kcm reconcile [--conf-dir=<dir>] [--interval=<seconds>] [--watch]
  kcm isolate [--conf-dir=<dir>] --pool=<pool> <command> [-- <args> ...]
  kcm install --install-dir=<dir> [--conf-dir=<dir>] [--docker-config=<file>]
              [--docker-host=<url>] [--default-runtime] [--hooks-dir=<dir>]
  kcm check [--conf-dir=<dir>] [--hooks-file=<file>] [--docker-config=<file>]
  kcm (prestart | poststop) [--conf-dir=<dir>]   (OCI hooks: state JSON on stdin)"""

EPILOG = """\
environment:
  KCM_CONF_DIR      configuration directory without --conf-dir (default /etc/kcm)
  KCM_LOCK_TIMEOUT  seconds to wait for the configuration lock (default 30)
  KCM_LOG_LEVEL     debug, info, warning (default) or error; logs go to stderr
  KCM_LOG_FILE      also append logs to this file
  KCM_SYSFS         root of sysfs for topology discovery (default /sys)

exit status:
  0  success
  1  operational error: exhausted pool, lock timeout, bad configuration or state
  2  bad usage
  141 stdout was closed before the output was written (as SIGPIPE would)
  isolate exits with its command's status (128+N when killed by signal N),
  127 when the command is not found, 126 when it cannot be run"""


def parser_class():
    """argparse's parser, reporting a usage error as one line, as a KcmError.

    Made on demand: the hooks' path never imports argparse.
    """
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise UsageError(f"{message} (see {self.prog} --help)")

    return Parser


def build_parser(prog):
    import argparse

    Parser = parser_class()
    parser = Parser(prog=prog, usage=USAGE, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="CPU pools for the containers of one Linux host.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__}")
    # prog=: without it a subcommand's usage line repeats the whole USAGE block.
    commands = parser.add_subparsers(dest="command", metavar="<command>",
                                     parser_class=Parser, prog=prog)

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--conf-dir", metavar="<dir>",
                         help="configuration directory "
                              "(default: $KCM_CONF_DIR or /etc/kcm)")
        return sub

    init = command("init", "discover the CPU topology and write the three pools")
    init.add_argument("--num-dp-cores", type=int, default=4, metavar="<num>",
                      help="physical cores for dataplane, one exclusive cpuset each "
                           "(default 4)")
    init.add_argument("--num-cp-cores", type=int, default=1, metavar="<num>",
                      help="physical cores for the shared controlplane pool; 0 leaves "
                           "it without cpusets (default 1)")
    init.add_argument("--overwrite", action="store_true",
                      help="replace a different existing layout when no cpuset is held")

    command("describe", "print the pools, cpusets and holders as JSON")

    reconcile = command("reconcile", "free cpusets whose holders are gone")
    reconcile.add_argument("--interval", type=float, metavar="<seconds>",
                           help="repeat every <seconds> until SIGTERM (with --watch: "
                                "the safety-net sweep period, default 10)")
    reconcile.add_argument("--watch", action="store_true",
                           help="free cpusets as soon as holders exit, from the "
                                "kernel's process events")

    isolate = command("isolate", "run a command confined to a cpuset of a pool")
    isolate.add_argument("--pool", required=True, metavar="<pool>",
                         help="pool to run in")
    isolate.add_argument("cmd", metavar="<command>", help="program to run (no shell)")
    isolate.add_argument("args", nargs=argparse.REMAINDER, metavar="<args>",
                         help="arguments for the command, after --")

    install = command("install", "install the hooks and the Docker runtime wrapper")
    install.add_argument("--install-dir", required=True, metavar="<dir>",
                         help="directory to receive kcm-hook, kcm-runc and the "
                              "hooks files")
    install.add_argument("--docker-config", metavar="<file>",
                         help="daemon.json to register the kcm runtime in")
    install.add_argument("--docker-host", metavar="<url>",
                         help="dockerd endpoint the hook asks for labels "
                              "(default unix:///var/run/docker.sock)")
    install.add_argument("--default-runtime", action="store_true",
                         help="also make kcm Docker's default runtime")
    install.add_argument("--hooks-dir", metavar="<dir>",
                         help="directory for the OCI hooks files "
                              "(default: <install-dir>/hooks.d)")

    check = command("check", "validate a configuration directory and report drift")
    check.add_argument("--hooks-file", metavar="<file>",
                       help="also validate this hooks.d file")
    check.add_argument("--docker-config", metavar="<file>",
                       help="also validate this daemon.json")

    prestart = command("prestart", "OCI prestart hook: place the container on stdin")
    prestart.add_argument("--docker-host", metavar="<url>",
                          help="ask this dockerd for the container's kcm.pool label")
    command("poststop", "OCI poststop hook: free what the container on stdin holds")
    return parser


def main(argv=None, prog=None):
    argv = sys.argv[1:] if argv is None else argv
    prog = prog or os.path.basename(sys.argv[0])
    if not prog or prog.endswith(".py"):
        prog = "kcm-hook"
    try:
        hook = hook_call(argv)
        if hook is not None:
            setup_hook_logging()
            return dispatch(hook) or 0
        setup_logging()
        args = build_parser(prog).parse_args(argv)
        if args.command is None:
            raise UsageError(f"no command given (see {prog} --help)")
        return dispatch(args) or 0
    except KcmError as err:
        return fail(prog, err, err.exit_code)
    except KeyboardInterrupt:
        return fail(prog, "interrupted", 130)
    except BrokenPipeError:
        # The reader of stdout went away (`kcm-hook describe | head`): end as
        # SIGPIPE would, without a message, and without a second error when
        # Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SIGPIPE
    except Exception as err:  # a bug: still one line for the user, detail in the log
        log.debug("unexpected error", exc_info=True)
        return fail(prog, f"internal error: {type(err).__name__}: {err} "
                          "(KCM_LOG_LEVEL=debug shows the traceback)", EXIT_ERROR)
    finally:
        logs.cancel()


def hook_call(argv):
    """The parsed arguments of a hook call in its plain form, else None.

    Runtimes run the hooks at every container start, where importing argparse
    and building the parser cost ~6 ms. Only `prestart`/`poststop` with their
    own options spelt out (--opt=value or --opt value) take this path;
    anything else (help, abbreviations, unknown options) returns None and goes
    through argparse, so its messages stay the same.
    """
    if not argv or argv[0] not in HOOK_OPTIONS:
        return None
    values = dict.fromkeys(HOOK_OPTIONS[argv[0]])
    rest = argv[1:]
    while rest:
        name, equals, value = rest[0].partition("=")
        if name not in values:
            return None
        if equals:
            rest = rest[1:]
        elif len(rest) > 1 and not rest[1].startswith("-"):
            value, rest = rest[1], rest[2:]
        else:
            return None
        values[name] = value
    return SimpleNamespace(command=argv[0], **{
        name[2:].replace("-", "_"): value for name, value in values.items()})


def fail(prog, message, code):
    text = " ".join(str(message).split("\n"))
    sys.stderr.write(f"{prog}: error: {text}\n")
    sys.stderr.flush()
    return code


def dispatch(args):
    """Call the subcommand with plain arguments."""
    if args.command == "prestart":
        from .hooks import prestart
        prestart(args.conf_dir, sys.stdin.buffer, docker_host=args.docker_host)
    elif args.command == "poststop":
        from .hooks import poststop
        poststop(args.conf_dir, sys.stdin.buffer)
    elif args.command == "init":
        return cmd_init(args.conf_dir, args.num_dp_cores, args.num_cp_cores,
                        args.overwrite)
    elif args.command == "describe":
        return cmd_describe(args.conf_dir)
    elif args.command == "reconcile":
        from .reconcile import run
        return run(args.conf_dir, interval=args.interval, watch=args.watch)
    elif args.command == "isolate":
        from .isolate import run
        extra = args.args[1:] if args.args[:1] == ["--"] else args.args
        return run(args.conf_dir, args.pool, [args.cmd, *extra])
    elif args.command == "install":
        from .install import run
        return run(args.install_dir, conf_dir=args.conf_dir,
                   docker_config=args.docker_config, docker_host=args.docker_host,
                   default_runtime=args.default_runtime, hooks_dir=args.hooks_dir)
    elif args.command == "check":
        from .check import run
        return run(args.conf_dir, hooks_file=args.hooks_file,
                   docker_config=args.docker_config)
    return 0


def cmd_init(conf_dir, num_dp_cores, num_cp_cores, overwrite):
    from . import layout, topology

    conf, changed = layout.init(conf_dir, topology.discover(), num_dp_cores,
                                num_cp_cores, overwrite=overwrite)
    verb = "wrote" if changed else "kept the identical layout in"
    print(f"{verb} {conf.path}:")
    for name, pool in conf.pools().items():
        kind = "exclusive" if pool.exclusive else "shared"
        print(f"  {name:<13} {kind:<9} {' '.join(pool.cpusets) or '(no cpusets)'}")
    return 0


def cmd_describe(conf_dir):
    import json

    from .pools import Configuration

    print(json.dumps(Configuration(conf_dir).describe(), indent=2, sort_keys=True))
    return 0


def setup_hook_logging():
    """Defer setup_logging until a record is due, if the level lets a hook be quiet."""
    level = QUIET_LEVELS.get(os.environ.get("KCM_LOG_LEVEL", "warning").upper())
    if level is None or os.environ.get("KCM_LOG_FILE"):
        setup_logging()
    else:
        logs.defer(level, setup_logging)


def setup_logging():
    """Logs go to stderr (never stdout: a runtime may read it), and to KCM_LOG_FILE."""
    import logging

    level_name = os.environ.get("KCM_LOG_LEVEL", "warning").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        raise UsageError(f"KCM_LOG_LEVEL={level_name.lower()!r}: use debug, info, "
                         "warning or error")
    root = logging.getLogger("kcm_hook")
    root.setLevel(level)
    fmt = logging.Formatter("kcm-hook[%(process)d] %(levelname)s %(name)s: %(message)s")
    handlers = [logging.StreamHandler(sys.stderr)]
    log_file = os.environ.get("KCM_LOG_FILE")
    if log_file:
        try:
            # Created 0644 whatever the umask: others must not forge the log.
            os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                             | os.O_CLOEXEC, 0o644))
            handlers.append(logging.FileHandler(log_file))
        except OSError as err:
            raise UsageError(f"KCM_LOG_FILE={log_file}: {err.strerror}") from err
    for handler in handlers:
        handler.setFormatter(fmt)
    root.handlers[:] = handlers


def entry_point():
    code = main()
    if hook_call(sys.argv[1:]) is not None:
        exit_now(code)
    sys.exit(code)


def exit_now(code):
    """Exit at once, skipping the interpreter's teardown: ~2 ms of every hook.

    Only output can be pending by then (files are written in with blocks or
    by write_atomic), so flush the log handlers and the standard streams.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    entry_point()
