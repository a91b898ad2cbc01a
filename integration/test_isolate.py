"""The real `kcm-hook isolate` command: exit codes, signals, a killed isolate."""

import os
import pty
import signal
import subprocess
import sys
import textwrap

import pytest

from integration.runc import KCM_HOOK, read_when, wait_for
from kcm_hook import procfs
from kcm_hook.pools import Configuration

# A command that reports each signal it gets in a file, then exits on SIGTERM
# or SIGHUP with 40+N; on SIGINT it carries on until SIGTERM.
REPORTER = textwrap.dedent("""\
    import os, signal, sys
    log = sys.argv[1]
    def note(text):
        with open(log, "a") as f:
            f.write(text + "\\n")
    def on_signal(signum, frame):
        note(signal.Signals(signum).name)
        if signum != signal.SIGINT:
            sys.exit(40 + signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    note("ready %d %s" % (os.getpid(), os.environ["KCM_CPUS_ASSIGNED"]))
    while True:
        signal.pause()
    """)


def isolate(conf_dir, pool, *command):
    return [KCM_HOOK, "isolate", f"--conf-dir={conf_dir}", f"--pool={pool}", *command]


def reporter(conf_dir, pool, log):
    return isolate(conf_dir, pool, sys.executable, "--", "-c", REPORTER, str(log))


def only_cpuset(conf_dir, pool):
    [cpus] = Configuration(conf_dir).pool(pool).cpusets
    return cpus


def held(conf_dir):
    conf = Configuration(conf_dir)
    tasks = {(name, cpus): cs.tasks for name, pool in conf.pools().items()
             for cpus, cs in pool.cpusets.items() if cs.tasks}
    return tasks, [(h.pool, h.cpus, h.pid) for h in conf.holders()]


def gone(pid):
    return procfs.start_time(pid) is None


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def test_exit_codes_and_one_line_errors(host_conf, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("not a program\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x00\x01 not a format the kernel knows\n")
    binary.chmod(0o755)
    exit5 = run(isolate(host_conf, "dataplane", "sh", "--", "-c", "exit 5"))
    assert exit5.returncode == 5
    assert run(isolate(host_conf, "dataplane", "true")).returncode == 0
    killed = run(isolate(host_conf, "dataplane", "sh", "--", "-c", "kill -KILL $$"))
    assert killed.returncode == 128 + 9

    cases = [(isolate(host_conf, "dataplane", "no-such-cmd"), 127,
              "command 'no-such-cmd' not found in PATH"),
             (isolate(host_conf, "dataplane", str(plain)), 126,
              f"'{plain}' is not an executable file"),
             (isolate(host_conf, "dataplane", str(binary)), 126,
              f"cannot run {binary}: Exec format error"),
             (isolate(host_conf, "gold", "true"), 1, "pool 'gold' does not exist"),
             ([KCM_HOOK, "isolate", f"--conf-dir={host_conf}", "true"], 2,
              "the following arguments are required: --pool")]
    for argv, code, message in cases:
        result = run(argv)
        assert result.returncode == code, (argv, result.stderr)
        assert result.stderr.startswith("kcm-hook: error: ")
        assert message in result.stderr
        assert result.stderr.count("\n") == 1
    assert held(host_conf) == ({}, [])


def ignored_signals(status_text):
    """Signal numbers in SigIgn; numbers, since realtime ones have no enum member."""
    mask = int(next(line.split()[1] for line in status_text.splitlines()
                    if line.startswith("SigIgn:")), 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def inherited_ignored():
    """What the tests' own environment ignores (a CI runner may ignore some
    signals): a command started without isolate, with Python's own SIG_IGNs
    for SIGPIPE and SIGXFSZ restored, as isolate restores them."""
    result = subprocess.run(["cat", "/proc/self/status"], capture_output=True,
                            text=True, check=True)
    return ignored_signals(result.stdout)


def test_command_starts_with_default_signal_dispositions(host_conf):
    baseline = inherited_ignored()
    result = run(isolate(host_conf, "infra", "cat", "/proc/self/status"))
    assert result.returncode == 0, result.stderr
    assert ignored_signals(result.stdout) == baseline

    # What was ignored when isolate started stays ignored, as nohup(1) wants.
    nohup = run(["nohup", *isolate(host_conf, "infra", "cat", "/proc/self/status")])
    assert nohup.returncode == 0, nohup.stderr
    assert ignored_signals(nohup.stdout) == baseline | {signal.SIGHUP}


def test_status_is_returned_when_sigchld_was_ignored(host_conf):
    ignoring = [sys.executable, "-c", ("import os, signal, sys; "
                                       "signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
                                       "os.execv(sys.argv[1], sys.argv[1:])")]

    exit7 = run([*ignoring, *isolate(host_conf, "infra", "sh", "--", "-c", "exit 7")])
    status = run([*ignoring, *isolate(host_conf, "infra", "cat", "/proc/self/status")])

    assert exit7.returncode == 7, exit7.stderr
    assert status.returncode == 0, status.stderr
    assert ignored_signals(status.stdout) == inherited_ignored() | {signal.SIGCHLD}
    assert held(host_conf) == ({}, [])


def test_command_sees_its_cpus_and_arguments(host_conf):
    dataplane = only_cpuset(host_conf, "dataplane")
    script = 'grep Cpus_allowed_list /proc/self/status; echo "$KCM_CPUS_ASSIGNED" "$@"'

    result = run(isolate(host_conf, "dataplane", "sh", "--", "-c", script, "sh",
                         "a b", "$HOME", ";"))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"Cpus_allowed_list:\t{dataplane}",
                                          f"{dataplane} a b $HOME ;"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_is_forwarded_and_its_status_returned(host_conf, tmp_path, signum):
    dataplane = only_cpuset(host_conf, "dataplane")
    log = tmp_path / "log"
    proc = subprocess.Popen(reporter(host_conf, "dataplane", log))
    text = read_when(str(log), "ready")
    child = int(text.split()[1])
    assert text.split()[2] == dataplane
    assert held(host_conf) == ({("dataplane", dataplane): [child]},
                               [("dataplane", dataplane, child)])

    proc.send_signal(signum)

    assert proc.wait(timeout=60) == 40 + signum
    assert log.read_text().splitlines()[1:] == [signum.name]
    assert held(host_conf) == ({}, [])


def test_sigint_from_the_terminal_reaches_the_command_once(host_conf, tmp_path):
    log = tmp_path / "log"
    pid, master = pty.fork()
    if pid == 0:
        os.execv(KCM_HOOK, reporter(host_conf, "infra", log))
    try:
        read_when(str(log), "ready")
        os.write(master, b"\x03")  # ^C: the tty signals the foreground group
        read_when(str(log), "SIGINT")
        os.kill(pid, signal.SIGTERM)  # isolate forwards this one

        _, status = os.waitpid(pid, 0)
        # Had isolate forwarded the tty's SIGINT too, the command would have
        # logged it before SIGTERM: pending signals are taken lowest first.
        assert log.read_text().splitlines()[1:] == ["SIGINT", "SIGTERM"]
        assert os.waitstatus_to_exitcode(status) == 40 + signal.SIGTERM
    finally:
        os.close(master)
    assert held(host_conf) == ({}, [])


def test_sigkilled_isolate_takes_its_command_along_and_reconcile_frees(host_conf,
                                                                      tmp_path):
    dataplane = only_cpuset(host_conf, "dataplane")
    log = tmp_path / "log"
    proc = subprocess.Popen(reporter(host_conf, "dataplane", log))
    child = int(read_when(str(log), "ready").split()[1])

    proc.kill()
    proc.wait(timeout=60)

    wait_for(lambda: gone(child), what=f"command {child} to die with isolate")
    assert held(host_conf)[0] == {("dataplane", dataplane): [child]}
    result = run([KCM_HOOK, "reconcile", f"--conf-dir={host_conf}"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"freed 1 stale entry and re-confined 0 drifted "
                             f"containers in {host_conf}\n")
    assert held(host_conf) == ({}, [])
    second = run(isolate(host_conf, "dataplane", "true"))
    assert second.returncode == 0, second.stderr


def children_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_isolate_killed_before_the_command_starts_runs_nothing(host_conf, tmp_path):
    marker = tmp_path / "ran"
    conf = Configuration(host_conf)
    with conf.locked():
        proc = subprocess.Popen(isolate(host_conf, "dataplane", "touch", str(marker)))
        [child] = wait_for(lambda: children_of(proc.pid), what="isolate's child")
        proc.kill()
        proc.wait(timeout=60)
        wait_for(lambda: gone(child), what=f"child {child} to exit")
    assert not marker.exists()
    assert held(host_conf) == ({}, [])


def test_sigterm_while_waiting_for_the_lock_starts_nothing(host_conf, tmp_path):
    marker = tmp_path / "ran"
    conf = Configuration(host_conf)
    with conf.locked():
        proc = subprocess.Popen(isolate(host_conf, "dataplane", "touch", str(marker)))
        wait_for(lambda: children_of(proc.pid), what="isolate's child")
        proc.terminate()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert not marker.exists()
    assert held(host_conf) == ({}, [])
