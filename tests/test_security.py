"""No writes through symlinks, no file or directory others can write, and the
hooks' path free of the heavy imports."""

import io
import json
import os
import stat
import subprocess
import sys

import pytest

from kcm_hook import layout, topology
from kcm_hook.errors import ConfigError
from kcm_hook.pools import Configuration, write_atomic
from tests.conftest import make_sysfs, sixteen_cpus
from tests.fakeproc import FakeProc


def writable_by_others(root):
    found = []
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(directory, name)
            if os.lstat(path).st_mode & 0o022:
                found.append(path)
    return found


@pytest.fixture
def open_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_init_creates_nothing_others_can_write_even_under_umask_0(tmp_path, open_umask):
    sys_root = make_sysfs(str(tmp_path / "sys"), sixteen_cpus())
    conf_dir = str(tmp_path / "etc" / "deep" / "kcm")
    layout.init(conf_dir, topology.discover(sys_root), 4, 1)
    assert writable_by_others(str(tmp_path / "etc")) == []
    assert not os.stat(tmp_path / "etc").st_mode & 0o022


def test_hooks_create_nothing_others_can_write(
        conf_dir, tmp_path, monkeypatch, open_umask):
    from kcm_hook import hooks
    fake = FakeProc(str(tmp_path / "fake"))
    monkeypatch.setenv("KCM_PROCFS", fake.proc)
    fake.spawn(300)
    state = {"id": "a", "pid": 300, "bundle": str(tmp_path),
             "annotations": {"kcm.pool": "dataplane"}}
    hooks.prestart(conf_dir, io.BytesIO(json.dumps(state).encode()))
    assert writable_by_others(conf_dir) == []


def test_log_file_is_not_writable_by_others(tmp_path, open_umask):
    log = tmp_path / "kcm.log"
    env = dict(os.environ, KCM_LOG_FILE=str(log))
    subprocess.run([sys.executable, "-m", "kcm_hook", "describe",
                    f"--conf-dir={tmp_path}/none"], env=env, capture_output=True)
    assert log.exists()
    assert not log.stat().st_mode & 0o022


def test_atomic_write_replaces_a_symlink_and_never_writes_through_it(
        conf_dir, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    holders = os.path.join(conf_dir, "holders.json")
    os.unlink(holders)
    os.symlink(outside, holders)

    Configuration(conf_dir).write_holders([])

    assert outside.read_text() == "precious"
    assert stat.S_ISREG(os.lstat(holders).st_mode)


def test_atomic_write_refuses_a_planted_temporary_symlink(conf_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("precious")
    path = os.path.join(conf_dir, "holders.json")
    os.symlink(outside, os.path.join(conf_dir, f".holders.json.{os.getpid()}.tmp"))

    with pytest.raises(ConfigError, match="cannot write .*holders.json"):
        write_atomic(path, "{}")

    assert outside.read_text() == "precious"


def test_hook_path_imports_neither_jsonschema_nor_docker_nor_pyroute2(
        conf_dir, tmp_path):
    fake = FakeProc(str(tmp_path / "fake"))
    fake.spawn(300)
    state = json.dumps({"id": "a", "pid": 300, "bundle": str(tmp_path),
                        "annotations": {"kcm.pool": "infra"}})
    probe = ("import io, sys\nfrom kcm_hook.cli import main\n"
             f"state = {state.encode()!r}\n"
             "for stage in ('prestart', 'poststop'):\n"
             "    sys.stdin = io.TextIOWrapper(io.BytesIO(state))\n"
             f"    assert main([stage, '--conf-dir={conf_dir}']) == 0\n"
             "heavy = ('jsonschema', 'docker', 'pyroute2')\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n")
    env = dict(os.environ, KCM_PROCFS=fake.proc)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"[]\n"
