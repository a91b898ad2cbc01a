"""`kcm-hook check`: validate a configuration directory and report what is wrong.

The directory is read as a document (each file its text, each directory an
object) and validated against schemas/configuration.json; then its meaning is
checked: cpusets that overlap or name CPUs that are offline or absent, tasks
of dead or reused pids, unfinished records, files left aside by a killed
writer, and drift (a container whose cgroup cpuset.cpus is not what kcm
recorded). A hooks.d file and a daemon.json are validated the same way.
Every problem is one line on stdout; the exit status is 0 when there is none.
jsonschema is imported here only, never on the hooks' path.
"""

import json
import os
import pkgutil
import stat

from . import allocator, cpulist, procfs, topology
from .layout import CONTROLPLANE, DATAPLANE, INFRA
from .errors import ConfigError, KcmError
from .pools import HOLDERS_FILE, TEMPORARY, Configuration, _check_owner

MAX_FILE_BYTES = 1 << 20


def run(conf_dir, hooks_file=None, docker_config=None):
    """Print one line per problem; return 0 when there is none, else 1."""
    conf = Configuration(conf_dir)
    problems = list(configuration_problems(conf))
    if hooks_file:
        problems += hooks_problems(hooks_file)
    if docker_config:
        problems += daemon_problems(docker_config)
    for problem in problems:
        print(problem)
    if not problems:
        checked = [conf.path] + [path for path in (hooks_file, docker_config) if path]
        print("ok: " + ", ".join(checked))
    return 1 if problems else 0


# -- the configuration directory ----------------------------------------------

def configuration_problems(conf):
    """Yield the problems of the configuration directory `conf`, one line each."""
    if not os.path.isdir(conf.path):
        yield f"{conf.path}: no such directory: run kcm-hook init"
        return
    document, unsafe = read_tree(conf.path)
    found = list(unsafe)
    found += schema_problems("configuration.json", document, conf.path, tree=True)
    if HOLDERS_FILE in document and isinstance(document[HOLDERS_FILE], str):
        found += _holders_problems(os.path.join(conf.path, HOLDERS_FILE),
                                   document[HOLDERS_FILE])
    yield from found
    if found:
        return
    try:
        pools = conf.pools()
        holders = conf.holders()
    except KcmError as err:
        yield str(err)
        return
    yield from _missing_pools(conf, pools)
    yield from _overlaps(conf, pools)
    yield from _offline(conf, pools)
    yield from _task_problems(conf, pools, holders)
    yield from _drift(holders, conf)
    for directory, _, files in os.walk(conf.path):
        for name in files:
            if TEMPORARY.fullmatch(name):
                yield (f"{os.path.join(directory, name)}: left aside by a writer that "
                       "was killed; kcm-hook reconcile removes it")


def read_tree(root):
    """(document, problems): the tree under `root` as nested dicts of file texts,
    and one line for each entry that is unsafe or unreadable (and so left out)."""
    problems = []

    def read(path, what):
        try:
            st = os.lstat(path)
        except OSError as err:
            problems.append(f"{path}: cannot stat: {err.strerror}")
            return None
        if stat.S_ISLNK(st.st_mode):
            problems.append(f"{path}: a symlink (to {os.readlink(path)}); kcm-hook "
                            "follows none in its configuration directory: replace it")
            return None
        try:
            _check_owner(path, st, what or ("directory" if stat.S_ISDIR(st.st_mode)
                                            else "file"))
        except ConfigError as err:
            problems.append(str(err))
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(path))
            except OSError as err:
                problems.append(f"{path}: cannot list: {err.strerror}")
                return None
            entries = {name: read(os.path.join(path, name), None) for name in names}
            return {name: value for name, value in entries.items() if value is not None}
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{path}: neither a file nor a directory")
            return None
        return _read_file(path, problems)

    document = read(root, "configuration directory")
    return (document if isinstance(document, dict) else {}), problems


def _read_file(path, problems):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        problems.append(f"{path}: cannot read: {err.strerror}")
        return None
    if len(data) > MAX_FILE_BYTES:
        problems.append(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        problems.append(f"{path}: not UTF-8 text (byte {err.start})")
        return None


def _holders_problems(path, text):
    try:
        doc = json.loads(text)
    except ValueError as err:
        return [f"{path}: not JSON ({err}): remove it and run kcm-hook reconcile"]
    return schema_problems("holders.json", doc, path)


def _overlaps(conf, pools):
    cpusets = [(f"{name}/{cpus}", set(cpulist.parse(cpus)))
               for name, pool in pools.items() for cpus in pool.cpusets]
    for i, (first, first_cpus) in enumerate(cpusets):
        for second, second_cpus in cpusets[i + 1:]:
            shared = first_cpus & second_cpus
            if shared:
                yield (f"{conf.pools_dir}: cpusets {first} and {second} overlap "
                       f"on CPUs {cpulist.format(shared)}: re-run kcm-hook init "
                       "--overwrite")


def _offline(conf, pools):
    try:
        online = set(topology.online_cpus())
    except KcmError as err:
        yield f"cannot tell which CPUs are online: {err}"
        return
    for name, pool in pools.items():
        for cpus in pool.cpusets:
            missing = set(cpulist.parse(cpus)) - online
            if missing:
                yield (f"{os.path.join(conf.pools_dir, name, cpus)}: names CPUs "
                       f"{cpulist.format(missing)} that are offline or absent: bring "
                       "them online or re-run kcm-hook init --overwrite")


def _missing_pools(conf, pools):
    """The pools init writes: without infra, every container naming no pool fails."""
    for name in (INFRA, DATAPLANE, CONTROLPLANE):
        if name not in pools:
            why = " (the default pool: unlabelled containers fail)" \
                if name == INFRA else ""
            yield (f"{conf.pools_dir}: pool {name!r} is missing{why}; run "
                   "kcm-hook init --overwrite")


def _task_problems(conf, pools, holders):
    by_key = {(h.pool, h.cpus, h.pid): h for h in holders}
    tasks = set()
    seen = {}
    for name, pool in pools.items():
        for cpus, cpuset in pool.cpusets.items():
            where = os.path.join(conf.pools_dir, name, cpus, "tasks")
            for pid in cpuset.tasks:
                tasks.add((name, cpus, pid))
                if pid in seen and seen[pid] != (name, cpus):
                    yield (f"{where}: pid {pid} also holds {'/'.join(seen[pid])}: "
                           "a process has one cpuset; restart its container")
                seen.setdefault(pid, (name, cpus))
                holder = by_key.get((name, cpus, pid))
                owner = f" (container {holder.container})" if holder and \
                    holder.container else ""
                start = procfs.start_time(pid)
                if start is None:
                    yield (f"{where}: pid {pid}{owner} is dead: run kcm-hook reconcile")
                elif holder and holder.start is not None and start != holder.start:
                    yield (f"{where}: pid {pid}{owner} was reused by another process: "
                           "run kcm-hook reconcile")
    for holder in holders:
        if (holder.pool, holder.cpus, holder.pid) not in tasks:
            yield (f"{os.path.join(conf.path, HOLDERS_FILE)}: pid {holder.pid} holds "
                   f"{holder.pool}/{holder.cpus} but is not in its tasks file (an "
                   "allocation that never finished): run kcm-hook reconcile")


def _drift(holders, conf):
    for holder, cgroup, actual in allocator.drift(conf, holders):
        if holder.cgroup == cgroup.path:
            fix = "run kcm-hook reconcile"
        else:
            confined = holder.cgroup or "none recorded"
            fix = (f"it is not in the cgroup kcm confined ({confined}), so reconcile "
                   "leaves it alone: restart the container")
        yield (f"{cgroup.cpus_file()}: container {holder.container} "
               f"(pid {holder.pid}) runs on CPUs {actual or '(none)'} but holds "
               f"{holder.pool}/{holder.cpus}: {fix}")


# -- hooks.d and daemon.json --------------------------------------------------

def hooks_problems(path):
    """The problems of an OCI hooks.d file (oci-hooks(5), version 1.0.0)."""
    doc, problems = _load_json(path)
    if doc is None:
        return problems
    problems = schema_problems("hooks.json", doc, path)
    if problems:
        return problems
    hook = doc["hook"]
    problems += _program_problems(path, hook["path"])
    for stage in ("prestart", "poststop"):
        if stage in hook.get("args", []) and stage not in doc["stages"]:
            problems.append(f"{path}: the hook runs as {stage} but stages "
                            f"{doc['stages']} do not include {stage!r}")
    return problems


def daemon_problems(path):
    """The problems of a Docker daemon.json, as far as kcm-hook relies on it."""
    doc, problems = _load_json(path)
    if doc is None:
        return problems
    problems = schema_problems("daemon.json", doc, path)
    if problems:
        return problems
    runtimes = doc.get("runtimes", {})
    for name, runtime in sorted(runtimes.items()):
        problems += _program_problems(path, runtime["path"], f"runtime {name!r}")
    default = doc.get("default-runtime")
    if default is not None and default != "runc" and default not in runtimes:
        problems.append(f"{path}: default-runtime {default!r} is not among the "
                        f"runtimes ({', '.join(sorted(runtimes)) or 'none'}) nor runc")
    return problems


def _program_problems(path, program, what="hook"):
    if not os.path.isabs(program):
        # dockerd looks a bare runtime name up in its PATH; nothing to check here.
        return []
    try:
        st = os.stat(program)
    except OSError as err:
        return [f"{path}: {what} program {program}: {err.strerror}"]
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return [f"{path}: {what} program {program} is not an executable file"]
    if st.st_mode & 0o022:
        return [f"{path}: {what} program {program} is writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):o}): anyone could run code as root"]
    return []


def _load_json(path):
    problems = []
    if not os.path.isfile(path):
        return None, [f"{path}: no such file"]
    text = _read_file(path, problems)
    if text is None:
        return None, problems
    try:
        return json.loads(text), []
    except ValueError as err:
        return None, [f"{path}: not JSON: {err}"]


# -- schemas --------------------------------------------------------------------

def schema_problems(schema_name, document, path, tree=False):
    """One line per place where `document` breaks schemas/<schema_name>.

    With `tree`, the document is a directory read by read_tree and the line
    names the file; otherwise it names the JSON path within `path`.
    """
    try:
        import jsonschema
    except ImportError:
        raise KcmError("check needs the jsonschema package, which this Python lacks "
                       "(the installed library tree does not carry it): run check from "
                       "the kcm image or a pip install of kcm-hook") from None

    # pkgutil reads package data wherever the package was imported from.
    schema = json.loads(pkgutil.get_data(__package__, f"schemas/{schema_name}"))
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path)):
        parts = [str(part) for part in error.absolute_path]
        if tree:
            where = os.path.join(path, *parts)
        else:
            where = f"{path}: at {error.json_path}"
        problems.append(f"{where}: {_message(error, tree)}")
    return problems


def _message(error, tree):
    if tree and error.validator == "type":
        found = "file" if isinstance(error.instance, str) else "directory"
        wanted = "directory" if error.validator_value == "object" else "file"
        return f"is a {found}, expected a {wanted}"
    if tree and error.validator == "additionalProperties":
        return f"unexpected entry: {_short(error.message)}"
    return _short(error.message)


def _short(message, limit=200):
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit] + "..."
