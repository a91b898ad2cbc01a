"""The real `kcm-hook reconcile`: once, --interval and --watch, on real holders."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager

import pytest

from integration.runc import KCM_HOOK, kcm_hooks, make_bundle, read_when, wait_for
from integration.test_isolate import REPORTER
from kcm_hook import allocator, procfs
from kcm_hook.pools import Configuration

SHOW_AND_WAIT = ["sh", "-c", "grep Cpus_allowed_list /proc/self/status; exec sleep 600"]
# Long enough that only an exit event can explain a cpuset freed within a
# test's deadline (integration.runc.wait_for, 20 s).
NO_PERIODIC_SWEEP = "--interval=600"
NOBODY = 65534


def held(conf_dir):
    conf = Configuration(conf_dir)
    tasks = {(name, cpus): cs.tasks for name, pool in conf.pools().items()
             for cpus, cs in pool.cpusets.items() if cs.tasks}
    return tasks, [(h.pool, h.cpus, h.pid, h.container) for h in conf.holders()]


def nothing_held(conf_dir):
    return held(conf_dir) == ({}, [])


def tasks_as(prefix, conf_dir):
    """The tasks, read by `kcm-hook describe` run as the directory's owner."""
    out = subprocess.run([*prefix, KCM_HOOK, "describe", f"--conf-dir={conf_dir}"],
                         capture_output=True, text=True, check=True)
    return {(name, cpus): entry["tasks"]
            for name, pool in json.loads(out.stdout)["pools"].items()
            for cpus, entry in pool["cpuLists"].items() if entry["tasks"]}


def only_cpuset(conf_dir, pool):
    [cpus] = Configuration(conf_dir).pool(pool).cpusets
    return cpus


@contextmanager
def reconciler(conf_dir, log_path, *options, prefix=()):
    """A running `reconcile` logging at info to `log_path`; stopped afterwards."""
    env = dict(os.environ, KCM_LOG_LEVEL="info")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*prefix, KCM_HOOK, "reconcile",
                                 f"--conf-dir={conf_dir}", *options],
                                stdout=log, stderr=log, env=env,
                                stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop(proc, log_path):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "stopping on signal" in read(log_path)


def read(path):
    with open(path) as f:
        return f.read()


def test_watch_frees_the_cpuset_of_a_killed_container_init(runc, host_conf, tmp_path):
    dataplane = only_cpuset(host_conf, "dataplane")
    bundle = make_bundle(str(tmp_path / "b"), SHOW_AND_WAIT,
                         annotations={"kcm.pool": "dataplane"},
                         hooks=kcm_hooks(host_conf))
    assert runc.run_detached("held", bundle, str(tmp_path / "c.log")) == 0
    read_when(str(tmp_path / "c.log"), f"Cpus_allowed_list:\t{dataplane}")
    init = runc.state("held")["pid"]
    log = tmp_path / "watch.log"

    with reconciler(host_conf, log, "--watch", NO_PERIODIC_SWEEP) as watch:
        read_when(str(log), "listening to process events")
        assert held(host_conf)[0] == {("dataplane", dataplane): [init]}

        os.kill(init, signal.SIGKILL)

        wait_for(lambda: nothing_held(host_conf), what="the watcher to free the cpuset")
        assert (f"freed stale task pool=dataplane cpus={dataplane} pid={init} "
                "container=held") in log.read_text()
        stop(watch, log)
    deleted = runc.delete("held")  # poststop: nothing left to free
    assert deleted.returncode == 0, deleted.stderr
    assert nothing_held(host_conf)


def test_watch_frees_the_cpuset_of_a_killed_isolate(host_conf, tmp_path):
    dataplane = only_cpuset(host_conf, "dataplane")
    log, out = tmp_path / "watch.log", tmp_path / "out"

    with reconciler(host_conf, log, "--watch", NO_PERIODIC_SWEEP) as watch:
        read_when(str(log), "listening to process events")
        isolate = subprocess.Popen([KCM_HOOK, "isolate", f"--conf-dir={host_conf}",
                                    "--pool=dataplane", sys.executable, "--", "-c",
                                    REPORTER, str(out)])
        child = int(read_when(str(out), "ready").split()[1])
        assert held(host_conf)[0] == {("dataplane", dataplane): [child]}

        isolate.kill()
        isolate.wait(timeout=60)

        wait_for(lambda: nothing_held(host_conf), what="the watcher to free the cpuset")
        assert procfs.start_time(child) is None
        assert f"pid={child} container=None" in log.read_text()
        stop(watch, log)


def test_interval_frees_a_dead_holder_and_ends_on_sigterm(host_conf, tmp_path):
    log = tmp_path / "interval.log"
    holder = subprocess.Popen(["sleep", "600"])
    conf = Configuration(host_conf)
    with conf.locked():
        allocator.allocate(conf, "dataplane", holder.pid, container="c1")

    with reconciler(host_conf, log, "--interval=0.2") as proc:
        read_when(str(log), "a full sweep every 0.2 s")
        assert not nothing_held(host_conf)
        holder.kill()
        holder.wait()

        wait_for(lambda: nothing_held(host_conf), what="a periodic sweep")
        # The sweep logs its count after it has released the lock.
        read_when(str(log), "periodic sweep freed 1 entries")
        stop(proc, log)


def test_once_frees_a_record_whose_pid_is_another_process_now(host_conf, tmp_path):
    other = subprocess.Popen(["sleep", "600"])
    try:
        conf = Configuration(host_conf)
        with conf.locked():
            allocator.allocate(conf, "dataplane", other.pid, container="old")
            holders = conf.holders()
            holders[0].start -= 1  # recorded for an earlier process with this pid
            conf.write_holders(holders)

        result = subprocess.run([KCM_HOOK, "reconcile", f"--conf-dir={host_conf}"],
                                capture_output=True, text=True, check=False,
                                env=dict(os.environ, KCM_LOG_LEVEL="info"))

        assert result.returncode == 0, result.stderr
        assert f"pid={other.pid} container=old" in result.stderr
        assert nothing_held(host_conf)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


CHECK_STILL_HELD = """\
for i in $(seq 200); do grep -q "\\(^\\|,\\)$$\\(,\\|$\\)" "$1" || exit 3; done"""


def test_sweeps_never_free_live_holders_while_isolates_come_and_go(host_conf, tmp_path):
    infra = only_cpuset(host_conf, "infra")
    tasks = os.path.join(host_conf, "pools", "infra", infra, "tasks")
    log = tmp_path / "watch.log"

    with reconciler(host_conf, log, "--watch", "--interval=0.05") as watch:
        read_when(str(log), "listening to process events")
        for _ in range(3):
            procs = [subprocess.Popen([KCM_HOOK, "isolate", f"--conf-dir={host_conf}",
                                       "--pool=infra", "sh", "--", "-c",
                                       CHECK_STILL_HELD, "sh", tasks])
                     for _ in range(6)]
            once = subprocess.run([KCM_HOOK, "reconcile", f"--conf-dir={host_conf}"],
                                  capture_output=True, text=True, check=False)
            assert once.returncode == 0, once.stderr
            assert [p.wait(timeout=120) for p in procs] == [0] * 6
        assert nothing_held(host_conf)
        stop(watch, log)


@pytest.fixture
def nobody_dir():
    """A directory that the unprivileged user `nobody` owns and can reach."""
    path = tempfile.mkdtemp(prefix="kcm-nobody-")
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path)


def test_watch_without_privilege_warns_and_sweeps_periodically(nobody_dir):
    # The test's own interpreter may live where nobody cannot look it up.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no python3 in /usr/bin for the unprivileged command")
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    conf_dir = os.path.join(nobody_dir, "kcm")
    subprocess.run([*as_nobody, KCM_HOOK, "init", f"--conf-dir={conf_dir}",
                    "--num-dp-cores=1", "--num-cp-cores=0"], check=True,
                   capture_output=True)
    log, out = os.path.join(nobody_dir, "watch.log"), os.path.join(nobody_dir, "out")

    with reconciler(conf_dir, log, "--watch", "--interval=0.2", prefix=as_nobody) as w:
        read_when(log, "falling back to a full sweep every 0.2 s")
        assert "cannot listen to the kernel's process events" in read(log)
        isolate = subprocess.Popen([*as_nobody, KCM_HOOK, "isolate",
                                    f"--conf-dir={conf_dir}", "--pool=dataplane",
                                    python, "--", "-c", REPORTER, out])
        child = int(read_when(out, "ready").split()[1])
        assert tasks_as(as_nobody, conf_dir) == {("dataplane", "1"): [child]}

        isolate.kill()
        isolate.wait(timeout=60)

        wait_for(lambda: tasks_as(as_nobody, conf_dir) == {}, what="a periodic sweep")
        assert f"pid={child} container=None" in read(log)
        stop(w, log)


# Run in a process of its own: the reader thread it starts never returns.
OVERRUN = textwrap.dedent("""\
    import json, queue, socket, subprocess, threading, time
    from kcm_hook import reconcile

    burst_done = threading.Event()
    opened = []

    class Unread:
        # The first socket: a tiny buffer, and nothing read until the burst is over.
        def __init__(self, sock):
            self.sock = sock
        def get(self):
            burst_done.wait()
            return self.sock.get()
        def close(self):
            self.sock.close()

    def listen():
        sock = reconcile.listen_to_events()
        opened.append(sock)
        if len(opened) > 1:
            return sock
        # The kernel raises this to its minimum, a few messages' worth.
        sock.asyncore.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        return Unread(sock)

    inbox = queue.SimpleQueue()
    threading.Thread(target=reconcile.read_events, args=(inbox, listen),
                     daemon=True).start()
    seen = [inbox.get(timeout=20)]
    for _ in range(200):
        subprocess.run(["true"], check=True)
    burst_done.set()
    while not isinstance(seen[-1], reconcile.Lost):
        seen.append(inbox.get(timeout=20))
    after = subprocess.Popen(["true"])
    after.wait()
    pids = []
    deadline = time.monotonic() + 20
    while after.pid not in pids and time.monotonic() < deadline:
        try:
            pids.append(inbox.get(timeout=1))
        except queue.Empty:
            pass
    print(json.dumps({"first": seen[0], "lost": seen[-1].reason,
                      "sockets": len(opened), "after_seen": after.pid in pids}))
    """)


def test_reader_starts_over_after_an_overrun_and_reports_the_loss():
    result = subprocess.run([sys.executable, "-c", OVERRUN], capture_output=True,
                            text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["first"] == "ready"
    assert report["sockets"] == 2
    assert report["after_seen"] is True
    assert report["lost"]  # pyroute2's own words for the overrun
