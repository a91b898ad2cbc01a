"""kcm-runc: runc's command line, the config.json injection, errors before exec."""

import json
import os
import subprocess
import sys

import pytest

from kcm_hook import runtime
from kcm_hook.errors import ConfigError, StateError, UsageError

KCM_RUNC = os.path.join(os.path.dirname(sys.executable), "kcm-runc")


# -- runc's command line ---------------------------------------------------


@pytest.mark.parametrize("argv, command, log, log_format", [
    (["state", "c1"], "state", None, None),
    (["--root", "/r", "--log", "/l.json", "--log-format", "json", "create", "c1"],
     "create", "/l.json", "json"),
    (["--root=/r", "--log=/l.json", "--log-format=json", "kill", "c1", "KILL"],
     "kill", "/l.json", "json"),
    (["-root", "/r", "-log", "/l", "start", "c1"], "start", "/l", None),
    (["--debug", "--systemd-cgroup", "--criu", "/usr/sbin/criu", "delete", "c1"],
     "delete", None, None),
    (["--debug=true", "--rootless", "false", "features"], "features", None, None),
    (["--log", "/l", "--", "state", "c1"], "state", "/l", None),
    (["--version"], None, None, None),
    ([], None, None, None),
])
def test_global_flags_and_subcommand(argv, command, log, log_format):
    invocation = runtime.parse_argv(argv)

    assert (invocation.command, invocation.log, invocation.log_format) == \
        (command, log, log_format)


def test_value_of_a_global_flag_is_never_the_subcommand():
    invocation = runtime.parse_argv(["--root", "create", "state", "c1"])

    assert invocation.command == "state"
    assert not invocation.creates()


@pytest.mark.parametrize("args", [
    ["--bundle", "/b", "c1"],
    ["--bundle=/b", "c1"],
    ["-b", "/b", "c1"],
    ["-b=/b", "c1"],
    ["-bundle", "/b", "c1"],
    ["--pid-file", "/p", "--console-socket", "/s", "-b", "/b", "c1"],
    ["c1", "--bundle", "/b"],
    ["--no-pivot", "--bundle", "/elsewhere", "--bundle", "/b", "c1"],
])
def test_bundle_flag_forms(args):
    for command in ("create", "run"):
        invocation = runtime.parse_argv(["--root", "/r", command, *args])

        assert invocation.creates()
        assert invocation.bundle() == "/b"


def test_value_that_looks_like_a_bundle_flag_is_a_value():
    invocation = runtime.parse_argv(["create", "--pid-file", "-b", "c1"])

    assert invocation.bundle() == os.getcwd()


def test_no_bundle_flag_means_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert runtime.parse_argv(["create", "--pid-file", "/p", "c1"]).bundle() == \
        str(tmp_path)


@pytest.mark.parametrize("args", [["c1", "--bundle"], ["--bundle=", "c1"], ["-b"]])
def test_bundle_flag_without_a_directory_is_refused(args):
    with pytest.raises(UsageError, match="needs a bundle directory"):
        runtime.parse_argv(["create", *args]).bundle()


# -- settings --------------------------------------------------------------


@pytest.fixture
def install_dir(tmp_path):
    """A directory laid out as kcm-hook install leaves it, with a fake hook."""
    path = tmp_path / "install"
    path.mkdir()
    hook = path / "kcm-hook"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    settings = {"conf_dir": str(tmp_path / "conf"), "docker_host": "unix:///d.sock",
                "hook": str(hook), "runtime": None}
    (path / "kcm-install.json").write_text(json.dumps(settings))
    return path


def settings_for(install_dir, environ=None):
    executable = str(install_dir / "kcm-runc")
    environ = {"PATH": os.environ["PATH"]} if environ is None else environ
    doc, source = runtime.read_settings(executable, environ)
    return runtime.hook_settings(doc, source, executable, environ)


def test_settings_file_beside_the_executable(install_dir, tmp_path):
    settings = settings_for(install_dir, {"PATH": "/nowhere",
                                          "KCM_CONF_DIR": "/ignored"})

    assert settings.hook == str(install_dir / "kcm-hook")
    assert settings.entry("prestart") == {
        "path": str(install_dir / "kcm-hook"),
        "args": ["kcm-hook", "prestart", f"--conf-dir={tmp_path / 'conf'}",
                 "--docker-host=unix:///d.sock"],
        "env": ["PATH=" + runtime.HOOK_PATH], "timeout": runtime.HOOK_TIMEOUT}
    assert settings.entry("poststop")["args"] == \
        ["kcm-hook", "poststop", f"--conf-dir={tmp_path / 'conf'}"]


def test_settings_file_named_by_the_environment(install_dir, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    environ = {"PATH": "/nowhere",
               "KCM_RUNC_CONFIG": str(install_dir / "kcm-install.json")}

    settings = settings_for(other, environ)

    assert settings.conf_dir == str(tmp_path / "conf")


def test_missing_settings_file_named_by_the_environment_is_an_error(tmp_path):
    environ = {"KCM_RUNC_CONFIG": str(tmp_path / "none.json")}

    with pytest.raises(ConfigError, match="KCM_RUNC_CONFIG=.*does not exist"):
        runtime.read_settings(str(tmp_path / "kcm-runc"), environ)


def test_without_a_settings_file_environment_and_defaults_apply(install_dir, tmp_path):
    os.unlink(install_dir / "kcm-install.json")

    bare = settings_for(install_dir, {"PATH": "/nowhere"})
    from_env = settings_for(install_dir, {"PATH": "/nowhere", "KCM_CONF_DIR": "/c",
                                          "KCM_DOCKER_HOST": "tcp://127.0.0.1:1"})

    assert (bare.hook, bare.conf_dir, bare.docker_host) == \
        (str(install_dir / "kcm-hook"), "/etc/kcm", "unix:///var/run/docker.sock")
    assert (from_env.conf_dir, from_env.docker_host) == ("/c", "tcp://127.0.0.1:1")


def test_hook_that_cannot_be_found_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot find the hook program 'kcm-hook'"):
        settings_for(tmp_path, {"PATH": str(tmp_path)})


@pytest.mark.parametrize("text, message", [
    ("{", "is not JSON"),
    ("[]", "is not a JSON object"),
])
def test_malformed_settings_file_is_refused(install_dir, text, message):
    (install_dir / "kcm-install.json").write_text(text)

    with pytest.raises(ConfigError, match=message):
        settings_for(install_dir)


def test_setting_of_the_wrong_type_is_refused(install_dir):
    (install_dir / "kcm-install.json").write_text(json.dumps({"hook": 3}))

    with pytest.raises(ConfigError, match="'hook' must be a non-empty string or null"):
        settings_for(install_dir)


def test_hook_environment_passes_log_settings_through(install_dir):
    settings = settings_for(install_dir, {"PATH": "/x", "KCM_LOG_LEVEL": "debug",
                                          "HOME": "/root"})

    assert settings.env == ["PATH=" + runtime.HOOK_PATH, "KCM_LOG_LEVEL=debug"]


# -- the real runtime ------------------------------------------------------


def executable_file(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_real_runtime_file_then_environment_then_path(tmp_path):
    from_file = executable_file(tmp_path / "file-runc")
    from_env = executable_file(tmp_path / "env-runc")
    in_path = executable_file(tmp_path / "runc")
    me = str(tmp_path / "kcm-runc")
    environ = {"PATH": str(tmp_path), "KCM_RUNTIME": from_env}

    assert runtime.real_runtime({"runtime": from_file}, "f.json", me, environ) == \
        from_file
    assert runtime.real_runtime({"runtime": None}, "f.json", me, environ) == \
        from_env
    assert runtime.real_runtime({}, None, me, {"PATH": str(tmp_path)}) == in_path


def test_real_runtime_that_cannot_be_found_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot find the real runtime 'runc' "
                                          r"\(the default\) in PATH=/nowhere"):
        runtime.real_runtime({}, None, str(tmp_path / "kcm-runc"), {"PATH": "/nowhere"})


def test_real_runtime_that_is_the_wrapper_itself_is_refused(tmp_path):
    me = executable_file(tmp_path / "kcm-runc")

    with pytest.raises(ConfigError, match="is kcm-runc itself"):
        runtime.real_runtime({}, None, me, {"PATH": "/x", "KCM_RUNTIME": me})


# -- config.json -----------------------------------------------------------


OTHER_HOOK = {"path": "/usr/bin/other", "args": ["other"], "timeout": 5}


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "bundle"
    path.mkdir()
    config = {"ociVersion": "1.0.2", "process": {"args": ["sh"]},
              "hooks": {"prestart": [OTHER_HOOK],
                        "createContainer": [OTHER_HOOK]},
              "x-unknown": {"kept": [1, 2.5, None, True, "é"]},
              "annotations": {"a": "b"}}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    os.chmod(path / "config.json", 0o600)
    return path


def load(bundle):
    return json.loads((bundle / "config.json").read_text())


def test_hooks_are_added_and_other_fields_kept(bundle, install_dir):
    before = load(bundle)
    settings = settings_for(install_dir)

    assert runtime.inject_hooks(str(bundle), settings) is True

    after = load(bundle)
    assert after["hooks"]["prestart"] == [OTHER_HOOK, settings.entry("prestart")]
    assert after["hooks"]["poststop"] == [settings.entry("poststop")]
    del after["hooks"]["poststop"]
    after["hooks"]["prestart"].pop()
    assert after == before
    assert list(load(bundle)) == list(before)


def test_hooks_are_added_once(bundle, install_dir):
    settings = settings_for(install_dir)
    runtime.inject_hooks(str(bundle), settings)
    once = (bundle / "config.json").read_text()

    assert runtime.inject_hooks(str(bundle), settings) is False

    assert (bundle / "config.json").read_text() == once
    hooks = load(bundle)["hooks"]
    assert [e["path"] for e in hooks["prestart"]].count(settings.hook) == 1
    assert [e["path"] for e in hooks["poststop"]].count(settings.hook) == 1


def test_config_without_hooks_gets_both(tmp_path, install_dir):
    (tmp_path / "config.json").write_text('{"ociVersion": "1.0.2"}')

    runtime.inject_hooks(str(tmp_path), settings_for(install_dir))

    assert sorted(load(tmp_path)["hooks"]) == ["poststop", "prestart"]


def test_config_is_replaced_by_rename_keeping_its_mode(bundle, install_dir):
    inode = os.stat(bundle / "config.json").st_ino

    runtime.inject_hooks(str(bundle), settings_for(install_dir))

    st = os.stat(bundle / "config.json")
    assert st.st_ino != inode
    assert st.st_mode & 0o777 == 0o600
    assert sorted(os.listdir(bundle)) == ["config.json"]


def test_failed_write_leaves_the_config_untouched(bundle, install_dir, monkeypatch):
    before = (bundle / "config.json").read_text()

    def refuse(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "rename", refuse)

    with pytest.raises(ConfigError, match="No space left on device"):
        runtime.inject_hooks(str(bundle), settings_for(install_dir))
    assert (bundle / "config.json").read_text() == before
    assert sorted(os.listdir(bundle)) == ["config.json"]


@pytest.mark.parametrize("text, message", [
    ('{"hooks": []}', "'hooks' is not an object"),
    ('{"hooks": {"poststop": {}}}', "'hooks.poststop' is not a list"),
    ("{not json", "is not JSON"),
])
def test_malformed_config_is_refused_and_untouched(tmp_path, install_dir, text,
                                                   message):
    (tmp_path / "config.json").write_text(text)

    with pytest.raises(StateError, match=message):
        runtime.inject_hooks(str(tmp_path), settings_for(install_dir))
    assert (tmp_path / "config.json").read_text() == text


# -- the executable: exec, passthrough, errors --------------------------------


@pytest.fixture
def recorder(tmp_path):
    """A stand-in for runc that writes its argv, one per line, and exits 7."""
    out = tmp_path / "argv"
    path = tmp_path / "fake-runc"
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {out}\nexit 7\n')
    path.chmod(0o755)
    return path, out


def run_wrapper(args, install_dir, **env):
    environ = {"PATH": os.environ["PATH"],
               "KCM_RUNC_CONFIG": str(install_dir / "kcm-install.json"), **env}
    return subprocess.run([KCM_RUNC, *args], capture_output=True, text=True,
                          env=environ, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [
    ["--root", "/r", "start", "c1"],
    ["--root", "/r", "--log", "/l", "--log-format", "json", "kill", "c1", "KILL"],
    ["delete", "--force", "c1"],
    ["features"],
    ["state", "--bundle", "/does/not/exist"],
])
def test_other_subcommands_are_exec_unchanged(args, install_dir, recorder):
    fake, out = recorder

    result = run_wrapper(args, install_dir, KCM_RUNTIME=str(fake))

    assert (result.returncode, result.stdout, result.stderr) == (7, "", "")
    assert out.read_text().splitlines() == args


def test_create_injects_then_execs_with_the_same_argv(bundle, install_dir, recorder):
    fake, out = recorder
    args = ["--root", "/r", "create", "--bundle", str(bundle), "--pid-file", "/p", "c1"]

    result = run_wrapper(args, install_dir, KCM_RUNTIME=str(fake))

    assert result.returncode == 7, result.stderr
    assert out.read_text().splitlines() == args
    assert len(load(bundle)["hooks"]["poststop"]) == 1


def test_error_before_exec_goes_to_the_json_log(tmp_path, install_dir, recorder):
    fake, out = recorder
    (tmp_path / "config.json").write_text("{broken")
    log = tmp_path / "log.json"
    log.write_text('{"level":"info","msg":"earlier"}\n')
    args = ["--log", str(log), "--log-format", "json", "create", "-b", str(tmp_path),
            "c1"]

    result = run_wrapper(args, install_dir, KCM_RUNTIME=str(fake))

    assert result.returncode == 1
    assert not out.exists()
    [line] = result.stderr.splitlines()
    assert line.startswith("kcm-runc: error: ") and "config.json is not JSON" in line
    earlier, entry = [json.loads(text) for text in log.read_text().splitlines()]
    assert earlier["msg"] == "earlier"
    assert entry["level"] == "error"
    assert entry["msg"] == "kcm-runc: " + line[len("kcm-runc: error: "):]
    assert entry["time"].endswith("Z")


def test_missing_runtime_is_named_on_stderr_and_in_the_log(tmp_path, install_dir):
    log = tmp_path / "log.json"

    result = run_wrapper(["--log", str(log), "--log-format", "json", "state", "c1"],
                         install_dir, PATH=str(tmp_path))

    assert result.returncode == 1
    assert "cannot find the real runtime 'runc'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot find the real runtime" in json.loads(log.read_text())["msg"]


def test_bad_bundle_flag_is_a_usage_error(install_dir, recorder):
    fake, out = recorder

    result = run_wrapper(["create", "c1", "--bundle"], install_dir,
                         KCM_RUNTIME=str(fake))

    assert result.returncode == 2
    assert result.stderr == "kcm-runc: error: --bundle needs a bundle directory\n"
    assert not out.exists()


# -- the sh front --------------------------------------------------------------


@pytest.fixture
def front(tmp_path, install_dir):
    """D/kcm-runc as the sh front, D/kcm-runc-py logging that it ran, then the
    Python wrapper; `runc` in PATH is a recorder that exits 7."""
    (install_dir / "kcm-runc").write_text(runtime.front_script())
    (install_dir / "kcm-runc").chmod(0o755)
    python_log = tmp_path / "python-ran"
    (install_dir / "kcm-runc-py").write_text(
        f"#!{sys.executable}\nopen({str(python_log)!r}, 'a').write('ran')\n"
        "from kcm_hook.runtime import entry_point\nentry_point()\n")
    (install_dir / "kcm-runc-py").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "argv"
    (bin_dir / "runc").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {out}\nexit 7\n')
    (bin_dir / "runc").chmod(0o755)

    def call(args, **env):
        environ = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
        result = subprocess.run([str(install_dir / "kcm-runc"), *args],
                                capture_output=True, text=True, env=environ,
                                stdin=subprocess.DEVNULL)
        passed = out.read_text().splitlines() if out.exists() else None
        return result, passed, python_log.exists()
    return call


def test_front_execs_runc_itself_for_other_subcommands(front):
    args = ["--root", "/r", "--log", "/l", "--log-format", "json", "delete", "c1"]

    result, passed, python_ran = front(args)

    assert (result.returncode, result.stderr, passed, python_ran) == \
        (7, "", args, False)


def test_front_hands_create_to_python(front, bundle):
    args = ["--root", "/r", "create", "--bundle", str(bundle), "c1"]

    result, passed, python_ran = front(args)

    assert (result.returncode, passed, python_ran) == (7, args, True), result.stderr
    assert len(load(bundle)["hooks"]["prestart"]) == 2


@pytest.mark.parametrize("argv", [
    ["state", "c1"], ["--root", "create", "state", "c1"], ["--root=/r", "kill", "c1"],
    ["-log", "/l", "-log-format=json", "start", "c1"], ["--debug", "features"],
    ["--version"], [], ["--log", "/l", "--", "state", "c1"], ["-", "x"],
    ["--criu", "run", "--rootless", "create", "list"], ["--root", "/r", "run", "c1"],
    ["--systemd-cgroup", "--log-format", "text", "create", "c1"],
])
def test_front_and_python_agree_on_the_subcommand(front, argv):
    _, _, python_ran = front(argv)

    expected = runtime.parse_argv(argv).creates() or "--" in argv
    assert python_ran == expected


@pytest.mark.parametrize("settings, env, code, passed", [
    ({"runtime": "/usr/bin/false"}, {}, 1, None),
    ({"runtime": None}, {"KCM_RUNTIME": "/usr/bin/false"}, 1, None),
    ({"conf_dir": "/c"}, {}, 7, ["state", "c1"]),
])
def test_front_leaves_a_named_runtime_to_python(front, install_dir, settings, env,
                                                code, passed):
    (install_dir / "kcm-install.json").write_text(json.dumps(settings))

    assert front(["state", "c1"], **env)[1:] == (passed, True)
    assert front(["state", "c1"], **env)[0].returncode == code


def test_front_without_settings_execs_runc(front, install_dir):
    os.unlink(install_dir / "kcm-install.json")

    assert front(["state", "c1"])[1:] == (["state", "c1"], False)


def test_front_lets_python_report_what_it_cannot_run(front, install_dir, tmp_path):
    log = tmp_path / "log.json"
    args = ["--log", str(log), "--log-format", "json", "start", "c1"]

    missing, _, python_ran = front(args, KCM_RUNC_CONFIG=str(tmp_path / "none.json"))
    assert (missing.returncode, python_ran) == (1, True)
    assert "KCM_RUNC_CONFIG=" in json.loads(log.read_text().splitlines()[-1])["msg"]

    os.unlink(tmp_path / "bin" / "runc")
    os.symlink(install_dir / "kcm-runc", tmp_path / "bin" / "runc")
    itself, _, _ = front(args)
    assert itself.returncode == 1
    assert "is kcm-runc itself" in itself.stderr


def test_hook_entries_match_the_installed_hooks_files():
    from kcm_hook import install

    assert runtime.HOOK_PATH == install.HOOK_PATH
    assert runtime.HOOK_TIMEOUT == install.HOOK_TIMEOUT
    assert runtime.FRONT_NAME == install.RUNTIME_NAME
