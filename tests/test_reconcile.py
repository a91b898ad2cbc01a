"""reconcile once, on real processes recorded as holders of a real configuration."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kcm_hook import allocator, layout, procfs, reconcile, topology
from kcm_hook.errors import UsageError
from kcm_hook.pools import Configuration


@pytest.fixture
def conf(conf_dir):
    return Configuration(conf_dir)


@pytest.fixture
def sleeper():
    """Factory: a live process that ends with the test."""
    procs = []

    def start(args=("sleep", "600")):
        proc = subprocess.Popen(list(args))
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def record(conf, pool, pid, container=None):
    with conf.locked():
        return allocator.allocate(conf, pool, pid, container=container)


def tasks(conf):
    return {(name, cpus): cs.tasks for name, pool in conf.pools().items()
            for cpus, cs in pool.cpusets.items() if cs.tasks}


def test_once_frees_the_dead_and_keeps_the_living(conf, sleeper, capsys):
    live = sleeper()
    live_cpus = record(conf, "dataplane", live.pid)
    record(conf, "dataplane", dead_pid())
    record(conf, "infra", dead_pid(), container="gone")

    assert reconcile.run(conf.path) == 0

    assert capsys.readouterr().out == (f"freed 2 stale entries and re-confined 0 "
                                       f"drifted containers in {conf.path}\n")
    assert tasks(conf) == {("dataplane", live_cpus): [live.pid]}
    assert [(h.pid, h.container) for h in conf.holders()] == [(live.pid, None)]


def test_pid_of_another_process_now_is_not_the_holder(conf, sleeper):
    live = sleeper()
    cpus = record(conf, "dataplane", live.pid, container="old")
    holders = conf.holders()
    holders[0].start = procfs.start_time(live.pid) - 1  # the pid was reused
    with conf.locked():
        conf.write_holders(holders)

    assert reconcile.sweep(conf) == 1

    assert tasks(conf) == {}
    assert conf.holders() == []
    assert Configuration(conf.path).pool("dataplane").cpusets[cpus].tasks == []


def test_matching_start_time_keeps_the_holder(conf, sleeper):
    live = sleeper()
    record(conf, "dataplane", live.pid, container="c1")

    assert reconcile.sweep(conf) == 0
    assert [h.container for h in conf.holders()] == ["c1"]


LEADER_EXITS = textwrap.dedent("""\
    import ctypes, sys, threading, time
    threading.Thread(target=time.sleep, args=(600,)).start()
    print("ready", flush=True)
    ctypes.CDLL(None).pthread_exit(None)
    """)


def test_process_whose_main_thread_exited_but_others_run_is_kept(conf, sleeper):
    proc = subprocess.Popen([sys.executable, "-c", LEADER_EXITS],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        record(conf, "dataplane", proc.pid)
        _wait_state(proc.pid, "Z")

        assert reconcile.sweep(conf) == 0
        assert len(conf.holders()) == 1

        proc.kill()
        proc.wait()
        assert reconcile.sweep(conf) == 1
        assert conf.holders() == []
    finally:
        proc.kill()
        proc.wait()


def _wait_state(pid, state):
    """Wait until /proc/<pid>/stat shows `state`: the leader exits asynchronously."""
    deadline = time.monotonic() + 20
    while True:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == state:
                return
        assert time.monotonic() < deadline, f"pid {pid} never reached state {state}"
        time.sleep(0.01)


def test_unfinished_record_is_dropped(conf, sleeper):
    live = sleeper()
    cpus = record(conf, "dataplane", live.pid, container="c1")
    pool = conf.pool("dataplane")
    pool.cpusets[cpus].tasks = []
    with conf.locked():
        conf.write_tasks("dataplane", pool.cpusets[cpus])

    assert reconcile.sweep(conf) == 1
    assert conf.holders() == []


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), 1e300])
def test_interval_must_be_positive_and_at_most_a_week(conf, value):
    with pytest.raises(UsageError, match="must be a number of seconds above 0"):
        reconcile.run(conf.path, interval=value)


def test_holder_index_follows_holders_json(conf, sleeper):
    index = reconcile.HolderIndex(conf)
    assert index.starts() == {}
    first, second = sleeper(), sleeper()
    record(conf, "dataplane", first.pid)
    assert set(index.starts()) == {first.pid}
    record(conf, "dataplane", second.pid)
    assert set(index.starts()) == {first.pid, second.pid}

    assert not index.any_gone([first.pid, second.pid, os.getpid()])
    second.kill()
    second.wait()
    assert index.any_gone([second.pid])
    assert not index.any_gone([dead_pid()])  # not a holder: no reason to sweep


def test_once_and_isolate_do_not_import_pyroute2(tmp_path):
    conf = Configuration(str(tmp_path / "host"))
    layout.init(conf.path, topology.discover("/sys"), 1, 0)
    code = ("import sys; from kcm_hook import cli; "
            f"cli.main(['reconcile', '--conf-dir={conf.path}']); "
            f"cli.main(['isolate', '--conf-dir={conf.path}', '--pool=infra', 'true']); "
            "print(sorted(m for m in ('pyroute2', 'docker', 'jsonschema') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.splitlines()[-1] == "[]"


def test_watch_without_pyroute2_warns_and_ends_cleanly_on_sigterm(conf, tmp_path):
    """A python3 without site packages, as the installed hook runs: no pyroute2."""
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no system python3 without the project's dependencies")
    source = os.path.dirname(os.path.dirname(os.path.abspath(reconcile.__file__)))
    code = (f"import sys; sys.path.insert(0, {source!r}); from kcm_hook import cli; "
            f"sys.exit(cli.main(['reconcile', '--conf-dir={conf.path}', '--watch']))")
    log = tmp_path / "log"
    with open(log, "w") as err:
        proc = subprocess.Popen([python, "-S", "-I", "-c", code], stderr=err)
    try:
        deadline = time.monotonic() + 20
        while "falling back" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no fallback warning"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
    assert ("No module named 'pyroute2'): install pyroute2 for the Python that runs "
            "kcm-hook; falling back to a full sweep every 10 s") in log.read_text()
