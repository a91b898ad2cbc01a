"""The hooks' fast path: argparse-free parsing, deferred logging, lean imports."""

import io
import json
import os
import subprocess
import sys

import pytest

from kcm_hook import cli, logs
from kcm_hook.cli import build_parser, hook_call, main
from kcm_hook.errors import LockTimeout, UsageError
from kcm_hook.pools import Configuration
from tests.fakeproc import FakeHost

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv", [
    ["prestart"],
    ["poststop"],
    ["prestart", "--conf-dir=/etc/kcm"],
    ["prestart", "--conf-dir", "/etc/kcm"],
    ["prestart", "--conf-dir="],
    ["prestart", "--docker-host=unix:///run/d.sock", "--conf-dir", "/c"],
    ["prestart", "--conf-dir=/a", "--conf-dir=/b"],
    ["poststop", "--conf-dir", "/etc/kcm"],
])
def test_plain_hook_calls_parse_as_argparse_does(argv):
    assert vars(hook_call(argv)) == vars(build_parser("kcm-hook").parse_args(argv))


@pytest.mark.parametrize("argv", [
    [], ["describe"], ["--version"], ["prestart", "-h"], ["prestart", "--help"],
    ["prestart", "--conf=/abbreviated"], ["prestart", "--conf-dir"],
    ["prestart", "--conf-dir", "--docker-host=x"], ["prestart", "extra"],
    ["poststop", "--docker-host=unix:///x"], ["prestart", "--bogus=1"],
])
def test_anything_else_is_left_to_argparse(argv):
    assert hook_call(argv) is None


def test_hook_option_argparse_rejects_is_still_a_usage_error(capsys):
    assert main(["poststop", "--docker-host=unix:///x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kcm-hook: error: unrecognized arguments: --docker-host")


def test_deferred_logging_drops_quiet_records_and_sets_up_for_the_first_due_one():
    calls = []
    logger = logs.get_logger("kcm_hook.test")
    logs.defer(logs.WARNING, lambda: calls.append("setup"))
    try:
        logger.info("dropped %s", "quietly")
        assert calls == []
        logger.warning("due")
        logger.error("after setup")
        assert calls == ["setup"]
    finally:
        logs.cancel()


def test_library_use_logs_straight_through_logging(caplog):
    caplog.set_level("DEBUG", logger="kcm_hook")

    logs.get_logger("kcm_hook.test").debug("pool=%s", "infra")

    [record] = caplog.records
    assert (record.name, record.getMessage()) == ("kcm_hook.test", "pool=infra")
    assert record.filename == os.path.basename(__file__)


def test_a_hook_warning_still_reaches_stderr_formatted(monkeypatch, capsys):
    monkeypatch.delenv("KCM_LOG_LEVEL", raising=False)
    hooks_log = logs.get_logger("kcm_hook.hooks")
    monkeypatch.setattr(cli, "dispatch", lambda args: hooks_log.warning("odd %s", 1))

    assert main(["poststop"]) == 0

    err = capsys.readouterr().err
    assert err == f"kcm-hook[{os.getpid()}] WARNING kcm_hook.hooks: odd 1\n"


def test_bad_log_level_is_refused_on_the_hook_path_too(monkeypatch, capsys):
    monkeypatch.setenv("KCM_LOG_LEVEL", "loud")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"{}")))

    assert main(["poststop"]) == 2
    assert "KCM_LOG_LEVEL='loud'" in capsys.readouterr().err


def test_main_leaves_no_deferred_setup_behind():
    with pytest.raises(UsageError):
        cli.parser_class()(prog="x").error("boom")
    assert main(["poststop", "--docker-host=x"]) == 2
    assert logs._deferred is None


@pytest.mark.parametrize("stage", ["prestart", "poststop"])
def test_hooks_import_neither_argparse_logging_nor_dataclasses(conf_dir, tmp_path,
                                                               stage):
    host = FakeHost(str(tmp_path / "host"), 1)
    host.spawn(100, "/c1")
    state = json.dumps({"id": "c1", "bundle": "/nonexistent", "pid": 100,
                        "annotations": {"kcm.pool": "dataplane"}})
    code = ("import sys\nfrom kcm_hook.cli import main\n"
            f"code = main(['{stage}', '--conf-dir={conf_dir}'])\n"
            "heavy = sorted({'argparse', 'logging', 'dataclasses', 'inspect', 'typing',"
            " 'contextlib', 'threading', 'signal'} & set(sys.modules))\n"
            "print(code, heavy)\n")
    env = {**os.environ, "PYTHONPATH": REPO, "KCM_PROCFS": host.proc}
    env.pop("KCM_LOG_LEVEL", None)
    env.pop("KCM_LOG_FILE", None)

    # -S: no site, whose .pth files (an editable install's finder) import
    # modules of their own.
    done = subprocess.run([sys.executable, "-S", "-c", code], input=state, text=True,
                          capture_output=True, env=env)

    assert (done.stdout, done.stderr) == ("0 []\n", "")


def test_lock_is_released_when_the_block_raises(conf_dir):
    conf = Configuration(conf_dir)
    with pytest.raises(RuntimeError):
        with conf.locked() as held:
            assert held is conf
            raise RuntimeError("inside")

    with conf.locked(timeout=2):
        pass


def test_contended_lock_times_out_and_leaves_no_descriptor(conf_dir):
    conf = Configuration(conf_dir)
    before = len(os.listdir("/proc/self/fd"))
    with conf.locked():
        with pytest.raises(LockTimeout):
            with conf.locked(timeout=0.05):
                pass
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_hook_exiting_early_still_flushes_its_logs(conf_dir, tmp_path):
    log_file = tmp_path / "kcm.log"
    env = {**os.environ, "PYTHONPATH": REPO, "KCM_LOG_LEVEL": "debug",
           "KCM_LOG_FILE": str(log_file)}

    done = subprocess.run([sys.executable, "-m", "kcm_hook", "poststop",
                           f"--conf-dir={conf_dir}"], env=env, capture_output=True,
                          text=True, input=json.dumps({"id": "c9", "bundle": "/x"}))

    assert (done.returncode, done.stdout) == (0, "")
    assert "DEBUG kcm_hook.hooks: container c9 held no cpuset" in done.stderr
    assert "container c9 held no cpuset" in log_file.read_text()


def test_a_failing_hook_exits_early_with_its_one_line(conf_dir):
    env = {**os.environ, "PYTHONPATH": REPO}

    done = subprocess.run([sys.executable, "-m", "kcm_hook", "poststop",
                           f"--conf-dir={conf_dir}"], env=env, capture_output=True,
                          text=True, input="not json")

    assert done.returncode == 1
    assert done.stderr.startswith("kcm-hook: error: OCI state is not JSON")
    assert done.stderr.count("\n") == 1
