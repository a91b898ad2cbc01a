"""kcm-hook check against fake machines: one line per problem, exit 1; 0 when clean."""

import json
import os
import subprocess
import sys

import pytest

from kcm_hook import check, layout, topology
from kcm_hook.pools import Configuration
from tests.conftest import make_sysfs, sixteen_cpus, write
from tests.fakeproc import FakeProc
from tests.snapshot import tree

KCM_HOOK = os.path.join(os.path.dirname(sys.executable), "kcm-hook")


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A 16-CPU fake machine, its configuration (4/1) and fake processes."""
    sys_root = make_sysfs(str(tmp_path / "sys"), sixteen_cpus())
    fake = FakeProc(str(tmp_path / "fake"))
    monkeypatch.setenv("KCM_SYSFS", sys_root)
    monkeypatch.setenv("KCM_PROCFS", fake.proc)
    conf_dir = str(tmp_path / "kcm")
    layout.init(conf_dir, topology.discover(sys_root), 4, 1)
    return conf_dir, fake, sys_root


def place(conf_dir, fake, pid, container, pool="dataplane", record_cgroup=True):
    from kcm_hook import allocator, cgroups
    fake.spawn(pid, start=pid * 10)
    conf = Configuration(conf_dir)
    cgroup = cgroups.cgroup_of(pid)
    with conf.locked():
        return allocator.allocate(conf, pool, pid, container=container,
                                  confine=cgroup.confine,
                                  cgroup=cgroup.path if record_cgroup else None)


def run_check(capsys, conf_dir, **kwargs):
    code = check.run(conf_dir, **kwargs)
    lines = capsys.readouterr().out.splitlines()
    return code, lines


def test_clean_configuration_passes(machine, capsys):
    conf_dir, fake, _ = machine
    place(conf_dir, fake, 300, "a")
    before = tree(conf_dir)

    code, lines = run_check(capsys, conf_dir)

    assert (code, lines) == (0, [f"ok: {conf_dir}"])
    assert tree(conf_dir) == before


def one_problem(capsys, conf_dir, **kwargs):
    before = tree(conf_dir)
    code, lines = run_check(capsys, conf_dir, **kwargs)
    assert code == 1
    assert tree(conf_dir) == before
    assert len(lines) == 1, lines
    return lines[0]


def test_overlapping_cpusets(machine, capsys):
    conf_dir, _, _ = machine
    pools = os.path.join(conf_dir, "pools")
    os.rename(os.path.join(pools, "controlplane", "3,11"),
              os.path.join(pools, "controlplane", "3-4,11-12"))
    line = one_problem(capsys, conf_dir)
    assert ("cpusets controlplane/3-4,11-12 and dataplane/4,12 overlap on CPUs 4,12"
            in line)


def test_offline_and_absent_cpus(machine, capsys):
    conf_dir, _, sys_root = machine
    write(os.path.join(sys_root, "devices", "system", "cpu", "online"), "0-6,8-14\n")
    code, lines = run_check(capsys, conf_dir)
    assert code == 1
    assert lines == [f"{conf_dir}/pools/dataplane/7,15: names CPUs 7,15 that are "
                     "offline or absent: bring them online or re-run kcm-hook init "
                     "--overwrite"]


def test_dead_and_reused_pids(machine, capsys):
    conf_dir, fake, _ = machine
    place(conf_dir, fake, 300, "gone")
    place(conf_dir, fake, 301, "reused", pool="infra")
    fake.kill(300)
    fake.spawn(301, start=1)
    code, lines = run_check(capsys, conf_dir)
    assert code == 1
    assert sorted(lines) == sorted([
        f"{conf_dir}/pools/dataplane/4,12/tasks: pid 300 (container gone) is dead: "
        "run kcm-hook reconcile",
        f"{conf_dir}/pools/infra/0-2,8-10/tasks: pid 301 (container reused) was "
        "reused by another process: run kcm-hook reconcile"])


def test_unfinished_record(machine, capsys):
    conf_dir, fake, _ = machine
    place(conf_dir, fake, 300, "a")
    write(os.path.join(conf_dir, "pools", "dataplane", "4,12", "tasks"), "")
    line = one_problem(capsys, conf_dir)
    assert "pid 300 holds dataplane/4,12 but is not in its tasks file" in line


def test_drift(machine, capsys):
    conf_dir, fake, _ = machine
    place(conf_dir, fake, 300, "a")
    write(os.path.join(fake.cgroup_root, "ctr-300", "cpuset.cpus"), "0-15\n")
    line = one_problem(capsys, conf_dir)
    assert line == (f"{fake.cgroup_root}/ctr-300/cpuset.cpus: container a (pid 300) "
                    "runs on CPUs 0-15 but holds dataplane/4,12: run kcm-hook "
                    "reconcile")


def test_drift_of_a_cgroup_kcm_did_not_confine_is_reported_and_left_alone(
        machine, capsys):
    from kcm_hook import allocator
    conf_dir, fake, _ = machine
    place(conf_dir, fake, 300, "unrecorded", record_cgroup=False)
    place(conf_dir, fake, 301, "moved", pool="infra")
    for pid in (300, 301):
        write(os.path.join(fake.cgroup_root, f"ctr-{pid}", "cpuset.cpus"), "0-15\n")
    fake.spawn(301, start=3010, cgroup="/shared")  # same process, another cgroup
    write(os.path.join(fake.cgroup_root, "shared", "cpuset.cpus"), "0-15\n")

    code, lines = run_check(capsys, conf_dir)
    assert code == 1
    assert lines == [
        f"{fake.cgroup_root}/ctr-300/cpuset.cpus: container unrecorded (pid 300) runs "
        "on CPUs 0-15 but holds dataplane/4,12: it is not in the cgroup kcm confined "
        "(none recorded), so reconcile leaves it alone: restart the container",
        f"{fake.cgroup_root}/shared/cpuset.cpus: container moved (pid 301) runs on "
        "CPUs 0-15 but holds infra/0-2,8-10: it is not in the cgroup kcm confined "
        f"({fake.cgroup_root}/ctr-301), so reconcile leaves it alone: restart the "
        "container"]

    conf = Configuration(conf_dir)
    with conf.locked():
        assert allocator.repair_drift(conf) == 0
    assert fake.cpus_of("/shared").strip() == "0-15"
    assert fake.cgroup_cpus(300) == "0-15"


def test_leftover_temporary(machine, capsys):
    conf_dir, _, _ = machine
    write(os.path.join(conf_dir, ".holders.json.999999.tmp"), "{")
    line = one_problem(capsys, conf_dir)
    assert line.endswith(".holders.json.999999.tmp: left aside by a writer that was "
                         "killed; kcm-hook reconcile removes it")


@pytest.mark.parametrize("change, expected", [
    (lambda c: write(f"{c}/pools/dataplane/exclusive", "yes"),
     "pools/dataplane/exclusive: 'yes' does not match"),
    (lambda c: write(f"{c}/pools/dataplane/4,12/tasks", "12,x"),
     "pools/dataplane/4,12/tasks: '12,x' does not match"),
    (lambda c: os.unlink(f"{c}/lock"), ": 'lock' is a required property"),
    (lambda c: os.unlink(f"{c}/pools/infra/0-2,8-10/tasks"),
     "pools/infra/0-2,8-10: 'tasks' is a required property"),
    (lambda c: os.mkdir(f"{c}/pools/bad name"), "'bad name' does not match"),
    (lambda c: os.mkdir(f"{c}/pools/infra/zero"), "'zero' does not match"),
    (lambda c: write(f"{c}/pools/infra/0-2,8-10/extra", ""), "unexpected entry"),
    (lambda c: write(f"{c}/holders.json", '{"holders": [{"pid": -1}]}'),
     "holders.json: at $.holders[0]: 'start' is a required property"),
    (lambda c: write(f"{c}/holders.json", "[,"), "holders.json: not JSON"),
    (lambda c: os.symlink("/etc/passwd", f"{c}/pools/infra/0-2,8-10/tasks2"),
     "tasks2: a symlink (to /etc/passwd)"),
    (lambda c: os.chmod(f"{c}/pools", 0o777), "must belong to uid"),
])
def test_schema_and_safety_problems(machine, capsys, change, expected):
    conf_dir, _, _ = machine
    change(conf_dir)
    before = tree(conf_dir)
    code, lines = run_check(capsys, conf_dir)
    assert code == 1
    assert any(expected in line for line in lines), lines
    assert tree(conf_dir) == before


def test_missing_directory(tmp_path, capsys):
    code, lines = run_check(capsys, str(tmp_path / "nope"))
    assert (code, lines) == (
        1, [f"{tmp_path}/nope: no such directory: run kcm-hook init"])


def hooks_doc(program, stage="prestart"):
    return {"version": "1.0.0", "hook": {"path": program, "args": ["kcm-hook", stage]},
            "when": {"always": True}, "stages": [stage]}


def test_hooks_file(machine, capsys, tmp_path):
    conf_dir, _, _ = machine
    good = tmp_path / "kcm-prestart.json"
    good.write_text(json.dumps(hooks_doc(KCM_HOOK)))
    assert run_check(capsys, conf_dir, hooks_file=str(good))[0] == 0

    bad = dict(hooks_doc(KCM_HOOK), stages=["poststop"], when={})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code, lines = run_check(capsys, conf_dir, hooks_file=str(tmp_path / "bad.json"))
    assert code == 1
    assert lines == [f"{tmp_path}/bad.json: at $.when: {{}} should be non-empty"]

    (tmp_path / "stage.json").write_text(json.dumps(dict(hooks_doc(KCM_HOOK),
                                                         stages=["poststop"])))
    code, lines = run_check(capsys, conf_dir, hooks_file=str(tmp_path / "stage.json"))
    assert lines == [f"{tmp_path}/stage.json: the hook runs as prestart but stages "
                     "['poststop'] do not include 'prestart'"]

    (tmp_path / "missing.json").write_text(json.dumps(hooks_doc("/nonexistent/kcm")))
    code, lines = run_check(capsys, conf_dir, hooks_file=str(tmp_path / "missing.json"))
    assert lines == [f"{tmp_path}/missing.json: hook program /nonexistent/kcm: "
                     "No such file or directory"]


def test_daemon_json(machine, capsys, tmp_path):
    conf_dir, _, _ = machine
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"runtimes": {"kcm": {"path": KCM_HOOK}},
                                "default-runtime": "kcm", "debug": True}))
    assert run_check(capsys, conf_dir, docker_config=str(path))[0] == 0

    path.write_text(json.dumps({"runtimes": {"kcm": {"runtimeArgs": "x"}},
                                "default-runtime": "kcm"}))
    code, lines = run_check(capsys, conf_dir, docker_config=str(path))
    assert code == 1
    assert lines == [f"{path}: at $.runtimes.kcm: 'path' is a required property",
                     f"{path}: at $.runtimes.kcm.runtimeArgs: 'x' is not of type "
                     "'array'"]

    path.write_text(json.dumps({"default-runtime": "kcm"}))
    code, lines = run_check(capsys, conf_dir, docker_config=str(path))
    assert lines == [f"{path}: default-runtime 'kcm' is not among the runtimes (none) "
                     "nor runc"]

    path.write_text("{")
    code, lines = run_check(capsys, conf_dir, docker_config=str(path))
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"{path}: not JSON")


def test_command_line(machine):
    conf_dir, _, _ = machine
    out = subprocess.run([KCM_HOOK, "check", f"--conf-dir={conf_dir}"],
                         capture_output=True, text=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"ok: {conf_dir}\n", "")
    os.chmod(conf_dir, 0o777)
    out = subprocess.run([KCM_HOOK, "check", f"--conf-dir={conf_dir}"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr == ""
    assert out.stdout.count("\n") == 1
    assert "not be writable by group or others" in out.stdout


def test_what_install_writes_passes_check(machine, tmp_path, monkeypatch, capsys):
    from kcm_hook import cli, install, libtree
    conf_dir, _, _ = machine
    monkeypatch.setattr(libtree, "VENDORED", ())
    dest, daemon = str(tmp_path / "opt-kcm"), str(tmp_path / "daemon.json")
    with open(daemon, "w") as f:
        json.dump({"log-level": "warn", "runtimes": {"other": {"path": "crun"}}}, f)
    assert cli.main(["install", f"--install-dir={dest}", f"--conf-dir={conf_dir}",
                     f"--docker-config={daemon}", "--default-runtime"]) == 0
    capsys.readouterr()
    for name in install.HOOKS_FILES.values():
        hooks_file = os.path.join(dest, "hooks.d", name)
        code, lines = run_check(capsys, conf_dir, hooks_file=hooks_file,
                                docker_config=daemon)
        assert (code, lines) == (0, [f"ok: {conf_dir}, {hooks_file}, {daemon}"])


def test_without_jsonschema_check_says_so_in_one_line(machine):
    conf_dir, _, _ = machine
    probe = ("import sys; sys.modules['jsonschema'] = None\n"
             "from kcm_hook.cli import main\n"
             f"sys.exit(main(['check', '--conf-dir={conf_dir}'], prog='kcm-hook'))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith("kcm-hook: error: check needs the jsonschema package")
    assert out.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["configuration.json", "holders.json", "hooks.json",
                                  "daemon.json"])
def test_shipped_schemas_are_valid_json_schemas(name):
    import pkgutil

    import jsonschema
    schema = json.loads(pkgutil.get_data("kcm_hook", f"schemas/{name}"))
    jsonschema.Draft202012Validator.check_schema(schema)


def test_holders_json_that_kcm_writes_passes_its_schema(machine):
    conf_dir, fake, _ = machine
    place(conf_dir, fake, 300, "a")
    place(conf_dir, fake, 301, None, pool="infra")
    with open(os.path.join(conf_dir, "holders.json")) as f:
        doc = json.load(f)
    assert len(doc["holders"]) == 2
    assert check.schema_problems("holders.json", doc, "holders.json") == []


def test_check_reports_a_missing_default_pool_and_a_pid_in_two_cpusets(tmp_path):
    import shutil

    conf_dir = str(tmp_path / "kcm")
    layout.init(conf_dir, topology.discover("/sys"), 1, 0)
    conf = Configuration(conf_dir)
    pid = os.getpid()
    for name in ("dataplane", "infra"):
        pool = conf.pool(name)
        [cpuset] = pool.cpusets.values()
        cpuset.tasks = [pid]
        conf.write_tasks(name, cpuset)
    problems = list(check.configuration_problems(conf))
    assert any(f"pid {pid} also holds dataplane/" in p for p in problems), problems

    shutil.rmtree(os.path.join(conf_dir, "pools", "infra"))
    problems = list(check.configuration_problems(conf))
    assert any("pool 'infra' is missing (the default pool" in p for p in problems), \
        problems
