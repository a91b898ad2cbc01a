"""kcm-hook install: the library tree and launchers, their atomic replacement, hooks
files, daemon.json."""

import json
import os
import shutil
import stat
import subprocess

import pytest

from kcm_hook import __version__, cli, install, libtree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "kcm_hook")

# A stand-in for the Docker runtime wrapper (another module's job): it shows
# where it was imported from, waits for a line, then imports one more module.
STUB_RUNTIME = '''\
import sys


def main(argv):
    import kcm_hook
    print("ready", kcm_hook.__file__, flush=True)
    sys.stdin.readline()
    from kcm_hook import probe
    print("probe", probe.VALUE, argv, flush=True)
    return 3
'''


@pytest.fixture(autouse=True)
def no_vendored(monkeypatch):
    """Most tests need only kcm_hook in the tree; building is faster then."""
    monkeypatch.setattr(libtree, "VENDORED", ())


ALL_VENDORED = libtree.VENDORED


def only_kcm_hook(root):
    """A package_files that finds kcm_hook at `root` and nothing else."""
    return lambda name: libtree.files_in_dir(root, name) if name == "kcm_hook" \
        else None


def run_install(*args):
    return cli.main(["install", *args], prog="kcm-hook")


@pytest.fixture
def dest(tmp_path):
    return str(tmp_path / "opt-kcm")


@pytest.fixture
def conf(tmp_path):
    return str(tmp_path / "etc-kcm")


def installed_files(directory):
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = (
                os.readlink(path) if os.path.islink(path) else open(path, "rb").read())
    return found


def tree_of(dest):
    """The library tree the launcher D/kcm-hook runs."""
    [tree] = [os.path.join(dest, "lib", name)
              for name in os.listdir(os.path.join(dest, "lib"))
              if repr(os.path.join(dest, "lib", name)) in
              open(os.path.join(dest, "kcm-hook")).read()]
    return tree


# -- the tree and its launcher ----------------------------------------------------


def test_installed_hook_runs_with_an_empty_environment_and_no_site(dest, conf, capsys):
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0

    hook = os.path.join(dest, "kcm-hook")
    assert not os.path.islink(hook)
    with open(hook, "rb") as f:
        assert f.readline() == b"#!/usr/bin/python3 -IS\n"
    assert os.access(hook, os.X_OK)
    result = subprocess.run([hook, "--version"], env={}, capture_output=True,
                            text=True)
    assert (result.returncode, result.stdout) == (0, f"kcm-hook {__version__}\n")
    assert result.stderr == ""


def test_host_python_alone_cannot_import_kcm_hook():
    """What the installed tree must make up for."""
    result = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", "import kcm_hook"],
                            env={}, capture_output=True, text=True)
    assert result.returncode != 0 and "No module named 'kcm_hook'" in result.stderr


def test_tree_carries_docker_sdk_and_pyroute2_imported_without_warnings(
        monkeypatch, dest, conf):
    monkeypatch.setattr(libtree, "VENDORED", ALL_VENDORED)
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0

    code = ("import sys; sys.path.insert(0, sys.argv[1]); import docker, requests; "
            "import pyroute2; print(docker.__file__); print(pyroute2.__file__); "
            "print(requests.certs.where())")
    result = subprocess.run(["/usr/bin/python3", "-I", "-S", "-W", "error", "-c",
                             code, tree_of(dest)],
                            env={}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    docker_file, pyroute2_file, bundle = result.stdout.split()
    assert docker_file.startswith(tree_of(dest) + "/docker/")
    assert pyroute2_file.startswith(tree_of(dest) + "/pyroute2/")
    assert bundle.startswith("/etc/")  # the host's bundle, not certifi's


def test_install_without_docker_sdk_warns_and_installs_the_hooks(
        monkeypatch, dest, conf, capsys):
    monkeypatch.setattr(libtree, "VENDORED", ("docker", "pyroute2"))
    monkeypatch.setattr(libtree, "package_files", only_kcm_hook(PACKAGE))

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0

    err = capsys.readouterr().err
    assert "docker SDK not found: the installed hook cannot read Docker labels" in err
    assert "pyroute2 not found: the installed reconcile --watch falls back" in err
    assert os.path.exists(os.path.join(dest, "hooks.d", "kcm-hook-prestart.json"))


def test_installed_program_installs_itself_elsewhere(monkeypatch, tmp_path, dest,
                                                     conf):
    monkeypatch.setattr(libtree, "VENDORED", ALL_VENDORED)
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    other = str(tmp_path / "other")

    result = subprocess.run([os.path.join(dest, "kcm-hook"), "install",
                             f"--install-dir={other}", f"--conf-dir={conf}"],
                            env={}, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert "carries kcm_hook, docker, requests" in result.stdout
    assert result.stdout.splitlines()[0].endswith(", pyroute2")
    # Built from the files of the running tree: the same build.
    assert os.path.basename(tree_of(other)) == os.path.basename(tree_of(dest))
    first, second = installed_files(tree_of(dest)), installed_files(tree_of(other))
    assert sorted(first) == sorted(second)
    sources = [n for n in first if not n.endswith(".pyc")]
    assert [first[n] for n in sources] == [second[n] for n in sources]


# -- replacing what is installed -------------------------------------------------


@pytest.fixture
def stub_package(tmp_path, monkeypatch):
    """Build trees from a copy of kcm_hook with a stub runtime and a probe module."""
    root = tmp_path / "src" / "kcm_hook"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(libtree, "package_files", only_kcm_hook(str(root)))

    def version(value, padding=0):
        (root / "runtime.py").write_text(STUB_RUNTIME)
        (root / "probe.py").write_text(f"VALUE = {value!r}\n")
        with open(root / "__init__.py", "a") as f:
            f.write("#" * padding + "\n")
    return version


def test_reinstall_keeps_the_tree_a_running_process_imports_from(
        stub_package, dest, conf):
    stub_package("old")
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    old_tree = tree_of(dest)
    old_files = installed_files(old_tree)
    tag = subprocess.run(["/usr/bin/python3", "-c",
                          "import sys; print(sys.implementation.cache_tag)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert f"kcm_hook/__pycache__/probe.{tag}.pyc" in old_files

    runtime = subprocess.Popen([os.path.join(dest, "kcm-runc"), "create", "x"],
                               env={}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        ready = runtime.stdout.readline().split()
        assert ready == ["ready", f"{old_tree}/kcm_hook/__init__.py"]

        stub_package("new, and longer than the old one", padding=500)
        assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
        assert tree_of(dest) != old_tree

        out, _ = runtime.communicate("go\n", timeout=60)
    finally:
        runtime.kill()
        runtime.wait()
    assert out.split("\n")[0] == "probe old ['create', 'x']"
    assert runtime.returncode == 3
    # Nothing added or changed: the bytecode install compiled is what ran.
    assert installed_files(old_tree) == old_files

    fresh = subprocess.run([os.path.join(dest, "kcm-runc-py")], input="\n", env={},
                           capture_output=True, text=True)
    assert "probe new, and longer than the old one []" in fresh.stdout


def test_third_install_removes_the_first_tree(stub_package, dest, conf):
    trees = []
    for n in range(3):
        stub_package(f"build {n}", padding=n)
        assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
        trees.append(tree_of(dest))

    assert len(set(trees)) == 3
    assert sorted(os.listdir(os.path.join(dest, "lib"))) == sorted(
        os.path.basename(t) for t in trees[1:])


def test_reinstall_of_the_same_build_writes_nothing(dest, conf, capsys):
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    before = installed_files(dest)
    inode = os.stat(tree_of(dest)).st_ino
    capsys.readouterr()

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0

    assert installed_files(dest) == before
    assert os.stat(tree_of(dest)).st_ino == inode
    assert "wrote nothing: every file was already up to date" in capsys.readouterr().out


def test_failed_write_leaves_the_previous_install_working(monkeypatch, dest, conf):
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    before = installed_files(dest)

    monkeypatch.setattr(libtree, "LAUNCHER", libtree.LAUNCHER + "# another build\n")

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 1
    assert installed_files(dest) == before
    result = subprocess.run([os.path.join(dest, "kcm-hook"), "--version"], env={},
                            capture_output=True, text=True)
    assert result.returncode == 0


def test_tree_that_does_not_compile_is_refused_and_left_out(monkeypatch, dest, conf,
                                                            capsys):
    files = libtree.files_in_dir(PACKAGE, "kcm_hook")
    files["kcm_hook/broken.py"] = b"def (:\n"
    monkeypatch.setattr(libtree, "package_files",
                        lambda name: files if name == "kcm_hook" else None)

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 1

    err = capsys.readouterr().err
    assert "/usr/bin/python3 cannot compile" in err and err.count("\n") == 1
    assert os.listdir(os.path.join(dest, "lib")) == []
    assert not os.path.exists(os.path.join(dest, "kcm-hook"))


def test_tree_modes_do_not_depend_on_the_umask(dest, conf):
    old = os.umask(0o077)
    try:
        assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    finally:
        os.umask(old)
    modes = set()
    for root, dirs, names in os.walk(tree_of(dest)):
        modes.add(stat.S_IMODE(os.stat(root).st_mode))
        modes.update(stat.S_IMODE(os.stat(os.path.join(root, n)).st_mode)
                     for n in names)
    assert modes == {0o755, 0o644}


def test_stale_temporary_tree_of_a_killed_install_is_removed(dest, conf):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(dest, "lib", f".kcm-hook-0.0-x.{dead.pid}.tmp")
    os.makedirs(os.path.join(stale, "kcm_hook"))

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0

    assert os.listdir(os.path.join(dest, "lib")) == [os.path.basename(tree_of(dest))]


def test_launcher_replaces_a_regular_file(dest, conf):
    os.makedirs(dest)
    with open(os.path.join(dest, "kcm-hook"), "w") as f:
        f.write("#!/bin/sh\nexit 1\n")

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0

    with open(os.path.join(dest, "kcm-hook")) as f:
        assert f.readline() == "#!/usr/bin/python3 -IS\n"
    assert [n for n in os.listdir(dest) if n.endswith(".tmp")] == []


def test_zipapp_layout_is_replaced_and_its_archive_pruned_later(stub_package, dest,
                                                                conf):
    lib = os.path.join(dest, "lib")
    os.makedirs(lib)
    with open(os.path.join(lib, "kcm-hook-0.0-old.pyz"), "w") as f:
        f.write("in use by a running hook\n")
    for name in ("kcm-hook", "kcm-runc-py"):
        os.symlink("lib/kcm-hook-0.0-old.pyz", os.path.join(dest, name))

    stub_package("first")
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    assert not os.path.islink(os.path.join(dest, "kcm-hook"))
    assert not os.path.islink(os.path.join(dest, "kcm-runc-py"))
    assert "kcm-hook-0.0-old.pyz" in os.listdir(lib)  # the previous build

    stub_package("second")
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    assert "kcm-hook-0.0-old.pyz" not in os.listdir(lib)
    assert len(os.listdir(lib)) == 2


def test_unsafe_install_dir_is_refused_and_left_alone(dest, conf, capsys):
    os.makedirs(dest)
    os.chmod(dest, 0o777)

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 1

    err = capsys.readouterr().err
    assert "mode 777" in err and f"chmod go-w {dest}" in err
    assert os.listdir(dest) == []


def test_hooks_dir_equal_to_install_dir_is_a_usage_error(dest, conf, capsys):
    assert run_install(f"--install-dir={dest}", f"--hooks-dir={dest}") == 2
    assert "every *.json" in capsys.readouterr().err
    assert not os.path.exists(dest)


# -- hooks files and kcm-install.json ---------------------------------------------


def test_repo_hooks_files_are_what_install_writes_for_opt_kcm():
    for stage, name in install.HOOKS_FILES.items():
        with open(os.path.join(REPO, "hooks.d", name)) as f:
            assert json.load(f) == install.hooks_document(stage, "/opt/kcm/kcm-hook",
                                                          "/etc/kcm")


def test_hooks_files_point_at_the_install_dir(tmp_path, dest, conf):
    os.chdir(tmp_path)
    assert run_install("--install-dir=opt-kcm", "--conf-dir=etc-kcm") == 0

    for stage, name in install.HOOKS_FILES.items():
        with open(os.path.join(dest, "hooks.d", name)) as f:
            doc = json.load(f)
        assert doc == {
            "version": "1.0.0",
            "hook": {"path": os.path.join(dest, "kcm-hook"),
                     "args": ["kcm-hook", stage, f"--conf-dir={conf}"],
                     "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                             "/sbin:/bin"],
                     "timeout": 45},
            "when": {"always": True},
            "stages": [stage]}
        assert doc["hook"]["timeout"] > 30  # the default lock wait
        args = cli.build_parser("kcm-hook").parse_args(doc["hook"]["args"][1:])
        assert (args.command, args.conf_dir) == (stage, conf)


def test_hooks_dir_option(tmp_path, dest, conf):
    hooks = str(tmp_path / "hooks.d")
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}",
                       f"--hooks-dir={hooks}") == 0
    assert sorted(os.listdir(hooks)) == sorted(install.HOOKS_FILES.values())
    assert not os.path.exists(os.path.join(dest, "hooks.d"))


def test_install_file_bakes_conf_dir_and_docker_host(monkeypatch, dest, conf):
    monkeypatch.setenv("KCM_CONF_DIR", "/elsewhere")
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}",
                       "--docker-host=unix:///run/my/docker.sock") == 0
    assert install.installed(dest) == {
        "conf_dir": conf, "docker_host": "unix:///run/my/docker.sock",
        "hook": os.path.join(dest, "kcm-hook"), "runtime": None}


def test_install_file_defaults(monkeypatch, dest):
    monkeypatch.delenv("KCM_CONF_DIR", raising=False)
    assert run_install(f"--install-dir={dest}") == 0
    assert install.installed(dest)["conf_dir"] == "/etc/kcm"
    assert install.installed(dest)["docker_host"] is None


@pytest.mark.parametrize("url", ["docker.sock", "unix://docker.sock", "ssh://host",
                                 "tcp://", "tcp://a b", "unix:///x\n"])
def test_bad_docker_host_is_a_usage_error(url, dest, capsys):
    assert run_install(f"--install-dir={dest}", f"--docker-host={url}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--docker-host=" in err
    assert not os.path.exists(dest)


def test_report_says_what_is_left_to_do(dest, conf, capsys):
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    out = capsys.readouterr().out
    assert f"wrote {os.path.join(dest, 'hooks.d', 'kcm-hook-prestart.json')}" in out
    assert f"kcm-hook init --conf-dir={conf}" in out
    assert f"podman --hooks-dir={dest}/hooks.d run" in out
    assert "crio.conf" in out


# -- daemon.json ------------------------------------------------------------------


@pytest.fixture
def stub_runtime(stub_package):
    """A package with a runtime module, which --docker-config requires."""
    stub_package("x")


def docker_install(dest, daemon_json, *extra):
    return run_install(f"--install-dir={dest}", f"--docker-config={daemon_json}",
                       *extra)


def test_daemon_json_is_created_when_absent(stub_runtime, tmp_path, dest, capsys):
    daemon_json = tmp_path / "daemon.json"

    assert docker_install(dest, daemon_json) == 0

    assert json.loads(daemon_json.read_text()) == {
        "runtimes": {"kcm": {"path": os.path.join(dest, "kcm-runc")}}}
    assert os.listdir(tmp_path).count("daemon.json") == 1
    assert not [n for n in os.listdir(tmp_path) if "backup" in n]
    out = capsys.readouterr().out
    assert "added runtimes.kcm" in out and "systemctl reload docker" in out


def test_daemon_json_merge_keeps_other_keys_and_backs_up(stub_runtime, tmp_path, dest,
                                                         capsys):
    original = ('{\n    "log-level": "warn",\n    "runtimes": {\n        "nvidia": '
                '{"path": "/usr/bin/nvidia-container-runtime"}\n    },\n'
                '    "storage-driver": "overlay2"\n}\n')
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text(original)
    daemon_json.chmod(0o600)

    assert docker_install(dest, daemon_json) == 0

    doc = json.loads(daemon_json.read_text())
    assert list(doc) == ["log-level", "runtimes", "storage-driver"]
    assert doc["runtimes"] == {
        "nvidia": {"path": "/usr/bin/nvidia-container-runtime"},
        "kcm": {"path": os.path.join(dest, "kcm-runc")}}
    assert "default-runtime" not in doc
    assert daemon_json.read_text().startswith('{\n    "log-level"')
    assert stat.S_IMODE(daemon_json.stat().st_mode) == 0o600
    [backup] = [p for p in tmp_path.iterdir() if ".kcm-backup-" in p.name]
    assert backup.read_text() == original
    assert f"saved as {backup}" in capsys.readouterr().out


def test_default_runtime_replaces_the_previous_one(stub_runtime, tmp_path, dest,
                                                   capsys):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"default-runtime": "runc"}')

    assert docker_install(dest, daemon_json, "--default-runtime") == 0

    assert json.loads(daemon_json.read_text())["default-runtime"] == "kcm"
    assert 'set default-runtime to "kcm" (was "runc")' in capsys.readouterr().out


def test_changed_runtime_path_keeps_the_entry_other_fields(stub_runtime, tmp_path,
                                                           dest):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text(json.dumps({"runtimes": {"kcm": {
        "path": "/old/kcm-runc", "runtimeArgs": ["--debug"]}}}))

    assert docker_install(dest, daemon_json) == 0

    assert json.loads(daemon_json.read_text())["runtimes"]["kcm"] == {
        "path": os.path.join(dest, "kcm-runc"), "runtimeArgs": ["--debug"]}


def test_registered_daemon_json_is_not_rewritten(stub_runtime, tmp_path, dest, capsys):
    daemon_json = tmp_path / "daemon.json"
    assert docker_install(dest, daemon_json, "--default-runtime") == 0
    inode = daemon_json.stat().st_ino
    capsys.readouterr()

    assert docker_install(dest, daemon_json) == 0

    assert daemon_json.stat().st_ino == inode
    assert json.loads(daemon_json.read_text())["default-runtime"] == "kcm"
    out = capsys.readouterr().out
    assert "already registers the kcm runtime" in out
    assert "systemctl reload docker" not in out
    assert not [n for n in os.listdir(tmp_path) if "backup" in n]


def test_symlinked_daemon_json_is_updated_through_the_link(stub_runtime, tmp_path,
                                                           dest):
    real = tmp_path / "real.json"
    real.write_text("{}")
    (tmp_path / "daemon.json").symlink_to(real)

    assert docker_install(dest, tmp_path / "daemon.json") == 0

    assert (tmp_path / "daemon.json").is_symlink()
    assert "kcm" in json.loads(real.read_text())["runtimes"]


def test_empty_daemon_json_counts_as_empty_object(stub_runtime, tmp_path, dest):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text("\n")
    assert docker_install(dest, daemon_json) == 0
    assert list(json.loads(daemon_json.read_text())) == ["runtimes"]


@pytest.mark.parametrize("text, message", [
    ('{"log-level": "warn",}', "is not valid JSON (Expecting property name enclosed "
                               "in double quotes: line 1 column 22 (char 21))"),
    ('["runtimes"]', "holds a JSON list, not an object"),
    ('{"runtimes": ["kcm"]}', "'runtimes' is not an object"),
    (b'{"a": "\xff"}', "is not UTF-8 text"),
])
def test_bad_daemon_json_is_refused_and_left_untouched(stub_runtime, tmp_path, dest,
                                                       capsys, text, message):
    daemon_json = tmp_path / "daemon.json"
    data = text if isinstance(text, bytes) else text.encode()
    daemon_json.write_bytes(data)
    inode = daemon_json.stat().st_ino

    assert docker_install(dest, daemon_json) == 1

    err = capsys.readouterr().err
    assert message in err and "untouched" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert daemon_json.read_bytes() == data and daemon_json.stat().st_ino == inode
    assert sorted(os.listdir(tmp_path)) == ["daemon.json", "src"]
    assert not os.path.exists(dest)


def test_missing_docker_directory_is_refused(stub_runtime, tmp_path, dest, capsys):
    assert docker_install(dest, tmp_path / "no-docker" / "daemon.json") == 1
    assert "is Docker installed?" in capsys.readouterr().err


def test_default_runtime_needs_docker_config(dest, capsys):
    assert run_install(f"--install-dir={dest}", "--default-runtime") == 2
    assert "--default-runtime needs --docker-config" in capsys.readouterr().err


def test_docker_config_needs_a_runtime_wrapper_in_the_build(monkeypatch, tmp_path,
                                                            dest, capsys):
    files = libtree.files_in_dir(PACKAGE, "kcm_hook")
    files.pop("kcm_hook/runtime.py", None)
    monkeypatch.setattr(libtree, "package_files",
                        lambda name: files if name == "kcm_hook" else None)

    assert docker_install(dest, tmp_path / "daemon.json") == 1

    assert "no Docker runtime wrapper" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "daemon.json")


def test_kcm_runc_is_installed_only_with_a_runtime_module(stub_runtime, dest, conf):
    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0
    with open(os.path.join(dest, "kcm-runc-py")) as runtime, \
            open(os.path.join(dest, "kcm-hook")) as hook:
        assert runtime.read() == hook.read()


def test_kcm_runc_is_the_sh_front_replacing_an_older_symlink(dest, conf):
    from kcm_hook.runtime import front_script

    os.makedirs(dest)
    os.symlink("lib/old.pyz", os.path.join(dest, "kcm-runc"))

    assert run_install(f"--install-dir={dest}", f"--conf-dir={conf}") == 0

    front = os.path.join(dest, "kcm-runc")
    assert not os.path.islink(front)
    assert os.stat(front).st_mode & 0o777 == 0o755
    with open(front) as f:
        assert f.read() == front_script()


def test_python_probe_is_the_hosts_python3():
    python = libtree.find_python()
    assert python.path == shutil.which("python3", path=install.HOOK_PATH)
    assert python.version >= (3, 9)
