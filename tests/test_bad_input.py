"""Bad input: one line on stderr naming the problem, a documented exit code,
no traceback, and the configuration directory byte-for-byte unchanged."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from kcm_hook import layout, topology
from tests.conftest import make_sysfs, sixteen_cpus, write
from tests.fakeproc import FakeProc
from tests.snapshot import tree

KCM_HOOK = os.path.join(os.path.dirname(sys.executable), "kcm-hook")
PID = 4242
OUTSIDER = 65534


@dataclass
class Case:
    id: str
    argv: list
    code: int
    says: str  # a fragment of the one stderr line
    stdin: object = None  # bytes, or a function of the context returning bytes
    setup: object = None  # a function of the context, run before the snapshot
    env: dict = field(default_factory=dict)
    root_only: bool = False
    needs: str = None  # a module another part of kcm-hook brings


class Context:
    def __init__(self, tmp_path):
        self.tmp = str(tmp_path)
        self.sys = make_sysfs(os.path.join(self.tmp, "sys"), sixteen_cpus())
        self.conf = os.path.join(self.tmp, "kcm")
        layout.init(self.conf, topology.discover(self.sys), 4, 1)
        self.fake = FakeProc(os.path.join(self.tmp, "fake"))
        self.fake.spawn(PID)
        self.bundle = os.path.join(self.tmp, "bundle")
        write(os.path.join(self.bundle, "config.json"), json.dumps(
            {"ociVersion": "1.0.2", "process": {"args": ["sh"], "env": []}}))
        self.outside = os.path.join(self.tmp, "outside")
        os.makedirs(self.outside)

    def pool(self, name):
        return os.path.join(self.conf, "pools", name)

    def tasks(self, pool, cpus):
        return os.path.join(self.pool(pool), cpus, "tasks")


def state(**changes):
    """A prestart state for the fake process asking for dataplane, with `changes`."""
    def build(ctx):
        doc = {"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": PID,
               "bundle": ctx.bundle, "annotations": {"kcm.pool": "dataplane"}}
        for key, value in changes.items():
            if value is DROP:
                doc.pop(key, None)
            else:
                doc[key] = value
        return json.dumps(doc).encode()
    return build


DROP = object()
PRESTART = ["prestart", "--conf-dir={conf}"]
POSTSTOP = ["poststop", "--conf-dir={conf}"]


def pool_state(name):
    return state(annotations={"kcm.pool": name})


def bundle_config(text):
    def setup(ctx):
        with open(os.path.join(ctx.bundle, "config.json"), "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
    return setup


def config_symlink(ctx):
    secret = os.path.join(ctx.outside, "secret.json")
    write(secret, '{"annotations": {"kcm.pool": "dataplane"}}')
    os.unlink(os.path.join(ctx.bundle, "config.json"))
    os.symlink(secret, os.path.join(ctx.bundle, "config.json"))


def config_fifo(ctx):
    os.unlink(os.path.join(ctx.bundle, "config.json"))
    os.mkfifo(os.path.join(ctx.bundle, "config.json"))


def config_directory(ctx):
    os.unlink(os.path.join(ctx.bundle, "config.json"))
    os.mkdir(os.path.join(ctx.bundle, "config.json"))


def fifo(relative):
    def setup(ctx):
        os.unlink(os.path.join(ctx.conf, relative))
        os.mkfifo(os.path.join(ctx.conf, relative))
    return setup


def no_config(ctx):
    os.unlink(os.path.join(ctx.bundle, "config.json"))


def put(relative, data):
    def setup(ctx):
        with open(os.path.join(ctx.conf, relative), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
    return setup


def remove(relative):
    def setup(ctx):
        path = os.path.join(ctx.conf, relative)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    return setup


def rename_cpuset(pool, old, new):
    def setup(ctx):
        os.rename(os.path.join(ctx.pool(pool), old), os.path.join(ctx.pool(pool), new))
    return setup


def symlink_out(relative, directory=False):
    def setup(ctx):
        path = os.path.join(ctx.conf, relative)
        target = os.path.join(ctx.outside, os.path.basename(path))
        if directory:
            shutil.copytree(path, target)
            shutil.rmtree(path)
        else:
            shutil.copy(path, target)
            os.unlink(path)
        os.symlink(target, path)
    return setup


def chmod(relative, mode):
    def setup(ctx):
        os.chmod(os.path.join(ctx.conf, relative), mode)
    return setup


def chown(relative):
    def setup(ctx):
        os.chown(os.path.join(ctx.conf, relative), OUTSIDER, OUTSIDER)
    return setup


def offline(*cpus):
    def setup(ctx):
        from kcm_hook import cpulist
        online = [cpu for cpu in range(16) if cpu not in cpus]
        write(os.path.join(ctx.sys, "devices", "system", "cpu", "online"),
              cpulist.format(online) + "\n")
    return setup


CASES = [
    # -- the state JSON on stdin
    Case("state-not-json", PRESTART, 1, "OCI state is not JSON", stdin=b"{"),
    Case("state-not-object", PRESTART, 1, "is a JSON list, not an object",
         stdin=b"[1]"),
    Case("state-string", PRESTART, 1, "is a JSON str, not an object", stdin=b'"x"'),
    Case("state-empty", PRESTART, 1, "no OCI state on stdin", stdin=b""),
    Case("state-blank", PRESTART, 1, "no OCI state on stdin", stdin=b" \n\t"),
    Case("state-no-id", PRESTART, 1, "has no 'id' string", stdin=state(id=DROP)),
    Case("state-id-number", PRESTART, 1, "has no 'id' string", stdin=state(id=7)),
    Case("state-id-newline", PRESTART, 1, "unprintable", stdin=state(id="a\nb")),
    Case("state-no-bundle", PRESTART, 1, "has no 'bundle' path",
         stdin=state(bundle=DROP)),
    Case("state-bundle-list", PRESTART, 1, "has no 'bundle' path",
         stdin=state(bundle=["/x"])),
    Case("state-no-pid", PRESTART, 1, "'pid' must be a positive integer",
         stdin=state(pid=DROP)),
    Case("state-pid-negative", PRESTART, 1, "got -5", stdin=state(pid=-5)),
    Case("state-pid-zero", PRESTART, 1, "got 0", stdin=state(pid=0)),
    Case("state-pid-string", PRESTART, 1, "got '4242'", stdin=state(pid="4242")),
    Case("state-pid-bool", PRESTART, 1, "got True", stdin=state(pid=True)),
    Case("state-pid-float", PRESTART, 1, "got 4242.5", stdin=state(pid=4242.5)),
    Case("state-pid-gone", PRESTART, 1, "process 4243 does not exist",
         stdin=state(pid=4243)),
    Case("state-annotations-list", PRESTART, 1, "'annotations' is not an object",
         stdin=state(annotations=["kcm.pool"])),
    Case("state-too-large", PRESTART, 1, "exceeds 1048576 bytes",
         stdin=b'{"id": "' + b"x" * (1 << 20) + b'"}'),
    Case("state-not-utf8", PRESTART, 1, "OCI state is not UTF-8",
         stdin=b'{"id": "\xff\xfe"}'),
    Case("bundle-without-config", PRESTART, 1, "has no config.json",
         stdin=state(annotations={}), setup=no_config),
    Case("config-not-json", PRESTART, 1, "config.json is not JSON",
         stdin=state(annotations={}), setup=bundle_config("{process")),
    Case("config-not-object", PRESTART, 1, "config.json is not a JSON object",
         stdin=state(annotations={}), setup=bundle_config("[]")),
    Case("config-annotations-list", PRESTART, 1, "'annotations' is not an object",
         stdin=state(annotations={}), setup=bundle_config('{"annotations": [1]}')),
    Case("config-symlink", PRESTART, 1, "config.json is a symlink",
         stdin=state(annotations={}), setup=config_symlink),
    Case("config-fifo", PRESTART, 1, "config.json is not a regular file",
         stdin=state(annotations={}), setup=config_fifo),
    Case("config-too-large", PRESTART, 1, "exceeds 16777216 bytes",
         stdin=state(annotations={}), setup=bundle_config(b" " * (16 << 20) + b"{}")),
    Case("config-not-utf8", PRESTART, 1, "config.json is not JSON",
         stdin=state(annotations={}), setup=bundle_config(b"\xff{}")),
    Case("poststop-not-json", POSTSTOP, 1, "OCI state is not JSON", stdin=b"nope"),
    Case("poststop-pid-string", POSTSTOP, 1, "'pid' must be a positive integer",
         stdin=state(pid="1")),
    # -- pool names, which come from container users
    Case("pool-dotdot", PRESTART, 1, "pool name '../infra' from the state annotation "
         "is not a pool name", stdin=pool_state("../infra")),
    Case("pool-absolute", PRESTART, 1, "pool name '/etc'", stdin=pool_state("/etc")),
    Case("pool-traversal", PRESTART, 1, "pool name 'infra/../dataplane'",
         stdin=pool_state("infra/../dataplane")),
    Case("pool-empty", PRESTART, 1, "pool name '' from", stdin=pool_state("")),
    Case("pool-dot", PRESTART, 1, "pool name '.' from", stdin=pool_state(".")),
    Case("pool-very-long", PRESTART, 1, "at most 64", stdin=pool_state("a" * 5000)),
    Case("pool-non-ascii", PRESTART, 1, "pool name 'dätaplane'",
         stdin=pool_state("dätaplane")),
    Case("pool-newline", PRESTART, 1, r"pool name 'infra\n'",
         stdin=pool_state("infra\n")),
    Case("pool-nul", PRESTART, 1, r"pool name 'infra\x00'",
         stdin=pool_state("infra\0")),
    Case("pool-unknown", PRESTART, 1, "pool 'gold' does not exist",
         stdin=pool_state("gold")),
    Case("pool-number", PRESTART, 1, "annotation kcm.pool must be a string, got int",
         stdin=pool_state(3)),
    Case("pool-config-dotdot", PRESTART, 1, "pool name '../infra' from the config.json",
         stdin=state(annotations={}),
         setup=bundle_config('{"annotations": {"kcm.pool": "../infra"}}')),
    Case("pool-env-absolute", PRESTART, 1,
         "pool name '/etc' from the process environment",
         stdin=state(annotations={}),
         setup=bundle_config('{"process": {"env": ["KCM_POOL=/etc"]}}')),
    Case("pool-lock-file", PRESTART, 1, "pool 'lock' does not exist",
         stdin=pool_state("lock")),
    # -- the configuration directory
    Case("conf-missing", PRESTART, 1, "does not exist: run kcm-hook init",
         stdin=state(), setup=remove("pools")),
    Case("conf-no-lock", PRESTART, 1, "lock is missing: run kcm-hook init",
         stdin=state(), setup=remove("lock")),
    Case("conf-no-exclusive", PRESTART, 1, "exclusive is missing",
         stdin=state(), setup=remove("pools/dataplane/exclusive")),
    Case("conf-garbled-exclusive", PRESTART, 1, "holds 'yes': expected 1 or 0",
         stdin=state(), setup=put("pools/dataplane/exclusive", "yes")),
    Case("conf-binary-exclusive", PRESTART, 1, "is not text",
         stdin=state(), setup=put("pools/dataplane/exclusive", b"\xff")),
    Case("conf-tasks-garbage", PRESTART, 1,
         "holds 'abc': expected comma-separated PIDs",
         stdin=state(), setup=put("pools/dataplane/4,12/tasks", "abc")),
    Case("conf-tasks-negative", PRESTART, 1, "holds '-5'",
         stdin=state(), setup=put("pools/dataplane/4,12/tasks", "-5")),
    Case("conf-tasks-zero", PRESTART, 1, "holds '0'",
         stdin=state(), setup=put("pools/dataplane/4,12/tasks", "0")),
    Case("conf-tasks-missing", PRESTART, 1, "tasks is missing",
         stdin=state(), setup=remove("pools/dataplane/4,12/tasks")),
    Case("conf-cpulist-garbage", PRESTART, 1, "the directory name is not a cpulist",
         stdin=state(), setup=rename_cpuset("dataplane", "5,13", "five")),
    Case("conf-cpulist-not-canonical", PRESTART, 1, "not in canonical form '5,13'",
         stdin=state(), setup=rename_cpuset("dataplane", "5,13", "13,5")),
    Case("conf-cpulist-offline", PRESTART, 1, "CPUs 4 that are offline or absent",
         stdin=state(), setup=offline(4)),
    Case("conf-cpulist-absent", PRESTART, 1, "CPUs 40 that are offline or absent",
         stdin=state(), setup=rename_cpuset("dataplane", "4,12", "4,40")),
    Case("conf-pools-overlap", PRESTART, 1, "overlap",
         stdin=state(), setup=rename_cpuset("controlplane", "3,11", "3-4,11-12")),
    Case("conf-cpusets-overlap", PRESTART, 1, "overlap",
         stdin=state(), setup=rename_cpuset("dataplane", "7,15", "4-5,12-13")),
    Case("conf-tasks-symlink", PRESTART, 1, "tasks is a symlink",
         stdin=state(), setup=symlink_out("pools/dataplane/4,12/tasks")),
    Case("conf-holders-symlink", PRESTART, 1, "holders.json is a symlink",
         stdin=state(), setup=symlink_out("holders.json")),
    Case("conf-lock-symlink", PRESTART, 1, "cannot open", stdin=state(),
         setup=symlink_out("lock")),
    Case("conf-pool-symlink", PRESTART, 1, "is a symlink",
         stdin=state(), setup=symlink_out("pools/dataplane", directory=True)),
    Case("conf-pools-symlink", PRESTART, 1, "is a symlink",
         stdin=state(), setup=symlink_out("pools", directory=True)),
    Case("conf-holders-huge", PRESTART, 1, "holders.json is larger than 1048576 bytes",
         stdin=state(), setup=put("holders.json", '{"holders": []}' + " " * (1 << 20))),
    Case("conf-holders-garbled", PRESTART, 1, "a record lacks the key 'start'",
         stdin=state(), setup=put("holders.json", '{"holders": [{"pid": 1}]}')),
    Case("conf-holders-list", PRESTART, 1,
         "holders.json is not an object with a list of holder records",
         stdin=state(), setup=put("holders.json", "[]")),
    Case("conf-holders-fifo", ["describe", "--conf-dir={conf}"], 1,
         "holders.json is not a regular file", setup=fifo("holders.json")),
    Case("conf-tasks-fifo", PRESTART, 1, "tasks is not a regular file", stdin=state(),
         setup=fifo("pools/dataplane/4,12/tasks")),
    Case("conf-exclusive-fifo", PRESTART, 1, "exclusive is not a regular file",
         stdin=state(), setup=fifo("pools/dataplane/exclusive")),
    Case("conf-dir-empty-flag", ["describe", "--conf-dir="], 2, "--conf-dir is empty"),
    Case("conf-dir-world-writable", PRESTART, 1, "not be writable by group or others",
         stdin=state(), setup=chmod(".", 0o777)),
    Case("conf-pool-world-writable", PRESTART, 1, "not be writable by group or others",
         stdin=state(), setup=chmod("pools/dataplane", 0o757)),
    Case("conf-dir-not-root", PRESTART, 1, "is owned by uid 65534",
         stdin=state(), setup=chown("."), root_only=True),
    Case("conf-tasks-not-root", PRESTART, 1, "is owned by uid 65534",
         stdin=state(), setup=chown("pools/dataplane/4,12/tasks"), root_only=True),
    Case("describe-garbled-exclusive", ["describe", "--conf-dir={conf}"], 1,
         "holds 'yes'", setup=put("pools/infra/exclusive", "yes")),
    # -- flags and environment
    Case("init-dp-negative", ["init", "--conf-dir={conf}", "--num-dp-cores=-1"], 2,
         "--num-dp-cores=-1: must be 1 or more"),
    Case("init-dp-zero", ["init", "--conf-dir={conf}", "--num-dp-cores=0"], 2,
         "--num-dp-cores=0: must be 1 or more"),
    Case("init-cp-negative", ["init", "--conf-dir={conf}", "--num-cp-cores=-2"], 2,
         "--num-cp-cores=-2: must be 0 or more"),
    Case("init-dp-not-a-number", ["init", "--conf-dir={conf}", "--num-dp-cores=four"],
         2, "invalid int value: 'four'"),
    Case("init-too-many-cores", ["init", "--conf-dir={conf}", "--num-dp-cores=8"], 1,
         "this machine has 8 online"),
    Case("init-unknown-flag", ["init", "--conf-dir={conf}", "--cores=3"], 2,
         "unrecognized arguments: --cores=3"),
    Case("no-command", [], 2, "no command given"),
    Case("unknown-command", ["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    Case("isolate-no-command", ["isolate", "--conf-dir={conf}", "--pool=infra"], 2,
         "the following arguments are required: <command>"),
    Case("isolate-unknown-pool",
         ["isolate", "--conf-dir={conf}", "--pool=gold", "true"], 1,
         "pool 'gold' does not exist", needs="kcm_hook.isolate"),
    Case("isolate-traversal-pool",
         ["isolate", "--conf-dir={conf}", "--pool=../infra", "true"], 1, "../infra",
         needs="kcm_hook.isolate"),
    Case("reconcile-garbled-tasks", ["reconcile", "--conf-dir={conf}"], 1, "holds 'x'",
         setup=put("pools/infra/0-2,8-10/tasks", "x"), needs="kcm_hook.reconcile"),
    Case("isolate-no-pool", ["isolate", "--conf-dir={conf}", "true"], 2,
         "the following arguments are required: --pool"),
    Case("state-nested-deeply", PRESTART, 1, "nested too deeply",
         stdin=b"[" * 100000 + b"]" * 100000),
    Case("bundle-config-directory", PRESTART, 1, "config.json is not a regular file",
         stdin=state(annotations={}), setup=config_directory),
    Case("reconcile-interval-huge",
         ["reconcile", "--conf-dir={conf}", "--interval=1e300"], 2, "at most 604800"),
    Case("lock-timeout-garbage", PRESTART, 2, "KCM_LOCK_TIMEOUT='soon'", stdin=state(),
         env={"KCM_LOCK_TIMEOUT": "soon"}),
    Case("log-level-garbage", PRESTART, 2, "KCM_LOG_LEVEL='loud'", stdin=state(),
         env={"KCM_LOG_LEVEL": "loud"}),
]


def run_case(case, ctx):
    stdin = case.stdin(ctx) if callable(case.stdin) else (case.stdin or b"")
    env = dict(os.environ, KCM_PROCFS=ctx.fake.proc, KCM_SYSFS=ctx.sys,
               KCM_LOCK_TIMEOUT="5")
    env.update(case.env)
    env.pop("KCM_CONF_DIR", None)
    env.pop("KCM_TEST_CRASH_AT", None)
    argv = [arg.replace("{conf}", ctx.conf) for arg in case.argv]
    return subprocess.run([KCM_HOOK, *argv], input=stdin, capture_output=True,
                          env=env, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(case, tmp_path):
    if case.root_only and os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"{case.needs} is not on this branch yet")
    ctx = Context(tmp_path)
    if case.setup:
        case.setup(ctx)
    before = tree(ctx.conf)
    cgroup_before = ctx.fake.cgroup_cpus(PID)

    result = run_case(case, ctx)

    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == case.code, stderr
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert stderr.startswith("kcm-hook: error: "), stderr
    assert case.says in stderr
    assert "Traceback" not in stderr
    assert result.stdout == b""
    assert tree(ctx.conf) == before
    assert ctx.fake.cgroup_cpus(PID) == cgroup_before


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
