"""Benchmark 1: what kcm's hooks add to a `runc run`.

Bundles of the same busybox container (`sh -c 'exit 0'`): no hooks; two
no-op Python hooks (prestart and poststop read the state and exit); kcm-hook's
prestart and poststop from the source tree, run like the no-op hooks (same
interpreter, flags and environment); and, where `kcm-hook install` exists,
the hooks exactly as it installs them (its hooks.d entries). The container
names no pool: infra. Then runs whose hooks are profiled, to say where a
kcm hook spends its time.
"""

import importlib.util
import json
import os
import subprocess
import sys

from bench import common
from integration.runc import Runc, hook_command, make_bundle, make_rootfs

TITLE = "hook cost per runc run (busybox sh -c 'exit 0')"
VARIANTS = ["none", "noop", "kcm"]  # and "installed" when install exists
TARGET = 1.15
PROFILE_HOOK = os.path.join(common.REPO, "bench", "profile_hook.py")
PROFILE_RUNS = 5
WORK_PHASES = {"read state": "state", "find cgroup": "cgroup lookup",
               "lock wait": "lock wait", "allocate (under lock)": "allocate",
               "release (under lock)": "release",
               "cgroup write": "of which cgroup write",
               "atomic file writes": "of which file writes"}
STAGES = ("prestart", "poststop")


def run(work, runs):
    result = common.Result(1, TITLE)
    conf_dir = common.host_conf(work)
    python = common.hook_python()
    launcher = common.write_launcher(os.path.join(work, "kcm-hook"), python)
    rootfs = make_rootfs(os.path.join(work, "rootfs"))
    hooks = {name: _hooks(name, python, launcher, conf_dir) for name in VARIANTS}
    installed = _installed_hooks(work, conf_dir)
    if installed:
        hooks["installed"] = installed
    else:
        result.notes.append("kcm as installed: not measured, kcm-hook install is "
                            "not on main yet (branch install)")
    bundles = {name: make_bundle(os.path.join(work, f"bundle-{name}"),
                                 ["sh", "-c", "exit 0"], rootfs=rootfs, hooks=entries)
               for name, entries in hooks.items()}
    runc = Runc(os.path.join(work, "runc-root"))
    try:
        samples = _measure(runc, bundles, runs)
        alone = _processes(python, hooks, runs)
        profile = _profile(runc, work, rootfs, python, conf_dir)
    finally:
        runc.cleanup()

    _report(result, samples, alone, profile)
    return result


def _hooks(name, python, launcher, conf_dir):
    env = common.hook_env()
    if name == "none":
        return None
    if name == "noop":
        entry = {"path": python, "args": ["python3", "-c", common.NOOP_HOOK],
                 "env": env}
        return {"prestart": [entry], "poststop": [dict(entry)]}
    return {stage: [{**hook_command(stage, conf_dir, launcher), "env": env}]
            for stage in ("prestart", "poststop")}


def _installed_hooks(work, conf_dir):
    """The hooks as `kcm-hook install` writes them for runtimes, or None without it."""
    if importlib.util.find_spec("kcm_hook.install") is None:
        return None
    install_dir = os.path.join(work, "install")
    done = subprocess.run([sys.executable, "-m", "kcm_hook", "install",
                           f"--install-dir={install_dir}", f"--conf-dir={conf_dir}"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kcm-hook install failed: {done.stderr.strip()}")
    hooks = {}
    for stage in STAGES:
        with open(os.path.join(install_dir, "hooks.d", f"kcm-hook-{stage}.json")) as f:
            hooks[stage] = [json.load(f)["hook"]]
    return hooks


def _measure(runc, bundles, runs):
    samples = {name: [] for name in bundles}
    for name in bundles:  # warm-up: page cache, bytecode, runc's own first run
        _run_once(runc, bundles[name], f"warm-{name}")
    for index, name in common.rounds(list(bundles), runs):
        samples[name].append(_run_once(runc, bundles[name], f"{name}-{index}"))
    return samples


def _run_once(runc, bundle, container_id):
    seconds, done = common.timed_run(
        runc.cmd("run", "--bundle", bundle, container_id), capture_output=True,
        text=True, stdin=subprocess.DEVNULL, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"runc run {container_id} failed: {done.stderr.strip()}")
    return seconds


def _processes(python, hooks, runs):
    """Median seconds of hook processes run directly, alternating, outside any runtime.

    `python -c pass`, the no-op hook, and the poststop of each kcm variant for a
    container that holds nothing: each hook's own start-up and exit, without
    the work of a release.
    """
    state = json.dumps({"ociVersion": "1.0.2", "id": "none", "bundle": "/"}).encode()
    commands = {"pass": ([python, "-c", "pass"], common.hook_env())}
    for name in ("noop", "kcm", "installed"):
        if name in hooks:
            entry = hooks[name]["poststop"][0]
            commands[name] = ([entry["path"], *entry["args"][1:]], entry.get("env", []))
    times = {name: [] for name in commands}
    for _, name in common.rounds(list(commands), runs):
        argv, env = commands[name]
        seconds, _ = common.timed_run(argv, input=state, check=True,
                                      env=dict(item.split("=", 1) for item in env))
        times[name].append(seconds)
    return {name: common.median(values) for name, values in times.items()}


def _profile(runc, work, rootfs, python, conf_dir):
    """PROFILE_RUNS runs with profiled hooks: {stage: {phase: [ms per run]}}."""
    out_dir = os.path.join(work, "profile")
    os.makedirs(out_dir, exist_ok=True)
    hooks = {stage: [{"path": python, "env": common.hook_env(),
                      "args": ["python3", "-X", "importtime", PROFILE_HOOK, out_dir,
                               stage, f"--conf-dir={conf_dir}"]}]
             for stage in STAGES}
    bundle = make_bundle(os.path.join(work, "bundle-profile"), ["sh", "-c", "exit 0"],
                         rootfs=rootfs, hooks=hooks)
    phases = {stage: {} for stage in STAGES}
    for index in range(PROFILE_RUNS):
        _run_once(runc, bundle, f"profile-{index}")
        for stage in STAGES:
            with open(os.path.join(out_dir, f"{stage}.json")) as f:
                doc = json.load(f)
            for name, value in _phases(doc):
                phases[stage].setdefault(name, []).append(value)
    return phases


def _phases(doc):
    """The profile's phases, its import time and its slowest imports, in ms."""
    imports = doc["imports"]
    yield "imports (all)", sum(imports.values())
    yield "of which kcm_hook", sum(v for k, v in imports.items()
                                   if k.startswith("kcm_hook"))
    yield from doc["phases"]
    for name, value in sorted(imports.items(), key=lambda item: -item[1])[:4]:
        yield f"import {name}", value


def _report(result, samples, alone, profile):
    med = {name: common.median(values) for name, values in samples.items()}
    for name, label in (("installed", "kcm as installed"), ("kcm", "kcm from source")):
        if name in med:
            ratio = med[name] / med["noop"]
            result.row(f"{label} / no-op Python hooks", f"{ratio:.3f}", f"<= {TARGET}",
                       ratio <= TARGET)
    result.row("kcm from source / no hooks", f"{med['kcm'] / med['none']:.3f}")
    names = [name for name in VARIANTS + ["installed"] if name in med]
    result.row(f"median runc run: {' | '.join(names)}",
               " | ".join(common.ms(med[name]) for name in names))
    per_hook = (med["kcm"] - med["noop"]) / 2
    result.row("kcm hook (source) over a no-op hook, each", common.ms(per_hook))
    names = list(alone)
    result.row(f"processes alone: {' | '.join(names)}",
               " | ".join(common.ms(alone[name]) for name in names))
    for stage, phases in profile.items():
        med = {name: common.median(values) for name, values in phases.items()}
        result.row(f"{stage}: imports, all | kcm_hook | main()",
                   " | ".join(f"{med[n]:.1f}" for n in
                              ("imports (all)", "of which kcm_hook", "cli.main (wall)"))
                   + " ms")
        parts = [f"{WORK_PHASES[n]} {med[n]:.1f}" for n in WORK_PHASES if n in med]
        result.row(f"{stage}: inside main() (ms)", ", ".join(parts))
        slowest = sorted((n for n in med if n.startswith("import ")),
                         key=lambda n: -med[n])
        result.row(f"{stage}: slowest imports (ms)",
                   ", ".join(f"{n[7:]} {med[n]:.1f}" for n in slowest[:3]))
    result.notes.append("processes alone: each run directly, alternating; the kcm "
                        "ones are a poststop of a container that holds nothing")
    result.notes.append(f"profile: median of {PROFILE_RUNS} runs with timed hooks; "
                        "json is imported before timing starts, as the no-op hook "
                        "imports it")
    result.raw = {"seconds": samples, "median": med, "processes_alone": alone,
                  "profile": profile}
