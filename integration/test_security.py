"""What a container user can make the hook do, seen from outside the hook."""

import json
import os
import subprocess
import sys

import pytest

from integration.cpusets import CpusetProcesses, allowed_cpus, finish, oci_state, \
    start_hook
from integration.runc import KCM_HOOK, kcm_hooks, make_bundle

# Runs kcm-hook under a Python audit hook (PEP 578) that appends every file
# opened and every process started to the log named by the first argument.
AUDITED_HOOK = """\
#!{python}
import atexit, json, sys
log_path = {log!r}
events = []
def audit(event, args):
    if event == "open":
        events.append(["open", str(args[0])])
    elif event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn",
                   "os.system", "os.fork", "os.forkpty", "pty.spawn"):
        events.append(["exec", repr(args)])
log = open(log_path, "a")
atexit.register(lambda: (log.write(json.dumps(events) + "\\n"), log.flush()))
sys.addaudithook(audit)
from kcm_hook.cli import main
sys.exit(main(sys.argv[1:], prog="kcm-hook"))
"""


@pytest.fixture
def processes():
    procs = CpusetProcesses()
    yield procs
    procs.cleanup()


def audited_hook(tmp_path):
    log = str(tmp_path / "audit.log")
    program = str(tmp_path / "kcm-hook-audited")
    with open(program, "w") as f:
        f.write(AUDITED_HOOK.format(python=sys.executable, log=log))
    os.chmod(program, 0o755)
    return program, log


def audit_events(log):
    with open(log) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("pool", ["dataplane", "../../../../etc/kcm-evil"])
def test_hook_runs_nothing_and_reads_only_config_json_from_the_bundle(
        runc, host_conf, tmp_path, pool):
    program, log = audited_hook(tmp_path)
    bundle_dir = str(tmp_path / "bundle")
    bundle = make_bundle(bundle_dir, ["true"], annotations={"kcm.pool": pool},
                         hooks=kcm_hooks(host_conf, program))
    # Bait in the container's filesystem: programs and files a careless hook might use.
    rootfs = os.path.join(bundle, "rootfs")
    for bait in ("bin/kcm-hook", "usr/bin/python3", "etc/kcm/lock", "proc/self/status"):
        os.makedirs(os.path.dirname(os.path.join(rootfs, bait)), exist_ok=True)
        with open(os.path.join(rootfs, bait), "w") as f:
            f.write("#!/bin/sh\ntouch /tmp/kcm-bait-ran\n")

    result = runc.run("audited", bundle)

    if pool == "dataplane":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "is not a pool name" in result.stderr
    runs = audit_events(log)
    # prestart, then poststop (runc runs it on a failed start as well)
    assert len(runs) >= 1
    for events in runs:
        assert [e for e in events if e[0] == "exec"] == []
        opened = {os.path.realpath(path) for kind, path in events if kind == "open"}
        assert {p for p in opened if p.startswith(os.path.realpath(bundle_dir) + "/")} \
            <= {os.path.realpath(os.path.join(bundle, "config.json"))}
        assert not any("kcm-evil" in path for path in opened)
    assert not os.path.exists("/etc/kcm-evil")


def test_drift_is_reported_by_check_and_repaired(host_conf, processes, tmp_path):
    [pid] = processes.spawn(1)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    state = oci_state("drifter", pid, str(bundle), "dataplane")
    code, _, err = finish(start_hook("prestart", host_conf, state))
    assert code == 0, err
    assert allowed_cpus(pid) == "1"
    checked = subprocess.run([KCM_HOOK, "check", f"--conf-dir={host_conf}"],
                             capture_output=True, text=True)
    assert (checked.returncode, checked.stdout) == (0, f"ok: {host_conf}\n")

    cpus_file = os.path.join(processes.procs[pid][1], "cpuset.cpus")
    with open(cpus_file, "w") as f:
        f.write("0-1")
    assert allowed_cpus(pid) == "0-1"

    checked = subprocess.run([KCM_HOOK, "check", f"--conf-dir={host_conf}"],
                             capture_output=True, text=True)
    assert checked.returncode == 1
    assert checked.stdout == (f"{cpus_file}: container drifter (pid {pid}) runs on "
                              "CPUs 0-1 but holds dataplane/1: run kcm-hook "
                              "reconcile\n")

    repaired = subprocess.run([KCM_HOOK, "reconcile", f"--conf-dir={host_conf}"],
                              capture_output=True, text=True)
    assert repaired.returncode == 0, repaired.stderr
    assert allowed_cpus(pid) == "1"
    checked = subprocess.run([KCM_HOOK, "check", f"--conf-dir={host_conf}"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
