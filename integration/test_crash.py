"""SIGKILL the hook at every step of an allocation and a release.

After each kill the configuration directory must parse, every tasks file
must hold either its old or its new content, and one reconcile must leave no
cpuset held by a dead process and no container holding two.
"""

import os
import signal
import subprocess

import pytest

from integration.cpusets import allowed_cpus, finish, oci_state, \
    start_hook
from integration.runc import KCM_HOOK
from kcm_hook import crashpoints
from kcm_hook.pools import TEMPORARY, Configuration


def hook(stage, conf_dir, state, crash_at=None):
    env = dict(os.environ)
    env.pop("KCM_TEST_CRASH_AT", None)
    if crash_at:
        env["KCM_TEST_CRASH_AT"] = crash_at
    return finish(start_hook(stage, conf_dir, state, env))


def reconcile_once(conf_dir):
    out = subprocess.run([KCM_HOOK, "reconcile", f"--conf-dir={conf_dir}"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def tasks_files(conf_dir):
    """{path: raw text} of every tasks file."""
    found = {}
    for directory, _, files in os.walk(os.path.join(conf_dir, "pools")):
        if "tasks" in files:
            with open(os.path.join(directory, "tasks")) as f:
                found[os.path.relpath(directory, conf_dir)] = f.read()
    return found


def assert_parses(conf_dir):
    conf = Configuration(conf_dir)
    conf.pools()
    conf.holders()
    conf.describe()


def assert_whole(before, after, pid):
    """Each tasks file holds its old pid list, or that list with or without `pid`."""
    assert before.keys() == after.keys()
    for path, text in after.items():
        old = before[path].split(",") if before[path] else []
        allowed = (old, old + [str(pid)], [item for item in old if item != str(pid)])
        assert (text.split(",") if text else []) in allowed, (path, text)


def assert_repaired(conf_dir, live):
    """No dead holder; each live container id holds exactly one cpuset; no leftovers."""
    conf = Configuration(conf_dir)
    held = [(name, cpus, pid) for name, pool in conf.pools().items()
            for cpus, cpuset in pool.cpusets.items() for pid in cpuset.tasks]
    assert {pid for _, _, pid in held} <= set(live.values())
    holders = conf.holders()
    assert sorted((h.container, h.pid) for h in holders) == sorted(live.items())
    assert sorted((h.pool, h.cpus, h.pid) for h in holders) == sorted(held)
    for directory, _, files in os.walk(conf_dir):
        assert not [name for name in files if TEMPORARY.fullmatch(name)], directory


@pytest.mark.parametrize("point", crashpoints.ALLOCATE)
def test_prestart_killed_at_each_step(point, host_conf, processes, bundle):
    bystander, victim, retry = processes.spawn(3)
    code, _, err = hook("prestart", host_conf,
                        oci_state("bystander", bystander, bundle))
    assert code == 0, err
    before = tasks_files(host_conf)

    code, _, _ = hook("prestart", host_conf, oci_state("victim", victim, bundle,
                                                       "dataplane"), crash_at=point)

    assert code == -signal.SIGKILL, f"{point} was never reached"
    assert_parses(host_conf)
    assert_whole(before, tasks_files(host_conf), victim)
    # The runtime stops a container whose prestart hook failed.
    processes.kill(victim)
    reconcile_once(host_conf)
    assert_repaired(host_conf, {"bystander": bystander})

    # The same container id, started again, is placed once.
    code, _, err = hook("prestart", host_conf, oci_state("victim", retry, bundle,
                                                         "dataplane"))
    assert code == 0, err
    assert_repaired(host_conf, {"bystander": bystander, "victim": retry})
    assert allowed_cpus(retry) == "1"


@pytest.mark.parametrize("point", crashpoints.RELEASE)
def test_poststop_killed_at_each_step(point, host_conf, processes, bundle):
    bystander, victim = processes.spawn(2)
    for name, pid, pool in (("bystander", bystander, None), ("victim", victim,
                                                             "dataplane")):
        assert hook("prestart", host_conf, oci_state(name, pid, bundle, pool))[0] == 0
    processes.kill(victim)
    before = tasks_files(host_conf)

    code, _, _ = hook("poststop", host_conf, oci_state("victim", victim, bundle),
                      crash_at=point)

    assert code == -signal.SIGKILL, f"{point} was never reached"
    assert_parses(host_conf)
    assert_whole(before, tasks_files(host_conf), victim)
    reconcile_once(host_conf)
    assert_repaired(host_conf, {"bystander": bystander})
    assert hook("poststop", host_conf, oci_state("victim", victim, bundle))[0] == 0
    assert_repaired(host_conf, {"bystander": bystander})


def test_crash_points_cost_nothing_when_unset(host_conf, processes, bundle):
    [pid] = processes.spawn(1)
    code, out, err = hook("prestart", host_conf,
                          oci_state("c", pid, bundle, "dataplane"),
                          crash_at="no-such-point")
    assert (code, out, err) == (0, "", "")
    assert crashpoints._CRASH_AT is None
