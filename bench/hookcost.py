"""Benchmark 1: what kcm's hooks add to a `runc run`.

Three bundles of the same busybox container (`sh -c 'exit 0'`): no hooks,
two no-op Python hooks (prestart and poststop read the state and exit), and
kcm-hook's prestart and poststop (the container names no pool: infra). All
hooks run with the same interpreter and environment. Then one run whose
hooks are profiled, to say where a kcm hook spends its time.
"""

import json
import os
import subprocess

from bench import common
from integration.runc import Runc, hook_command, make_bundle, make_rootfs

TITLE = "hook cost per runc run (busybox sh -c 'exit 0')"
VARIANTS = ["none", "noop", "kcm"]
TARGET = 1.15
PROFILE_HOOK = os.path.join(common.REPO, "bench", "profile_hook.py")


def run(work, runs):
    result = common.Result(1, TITLE)
    conf_dir = common.host_conf(work)
    python = common.hook_python()
    launcher = common.write_launcher(os.path.join(work, "kcm-hook"), python)
    rootfs = make_rootfs(os.path.join(work, "rootfs"))
    bundles = {name: make_bundle(os.path.join(work, f"bundle-{name}"),
                                 ["sh", "-c", "exit 0"], rootfs=rootfs,
                                 hooks=_hooks(name, python, launcher, conf_dir))
               for name in VARIANTS}
    runc = Runc(os.path.join(work, "runc-root"))
    try:
        samples = _measure(runc, bundles, runs)
        startup = _interpreter_startup(python, runs)
        profile = _profile(runc, work, rootfs, python, conf_dir)
    finally:
        runc.cleanup()

    _report(result, samples, startup, profile)
    return result


def _hooks(name, python, launcher, conf_dir):
    env = common.hook_env()
    if name == "none":
        return None
    if name == "noop":
        entry = {"path": python, "args": ["python3", "-c", common.NOOP_HOOK], "env": env}
        return {"prestart": [entry], "poststop": [dict(entry)]}
    return {stage: [{**hook_command(stage, conf_dir, launcher), "env": env}]
            for stage in ("prestart", "poststop")}


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


def _interpreter_startup(python, runs):
    """Median seconds of `python -c pass` and of the no-op hook, outside any runtime."""
    env = dict(item.split("=", 1) for item in common.hook_env())
    figures = {}
    for label, code in (("pass", "pass"), ("noop", common.NOOP_HOOK)):
        times = []
        for _ in range(runs):
            seconds, _ = common.timed_run([python, "-c", code], input=b"{}", env=env,
                                          check=True)
            times.append(seconds)
        figures[label] = common.median(times)
    return figures


def _profile(runc, work, rootfs, python, conf_dir):
    """One run with profiled hooks; return {stage: the profile's summary}."""
    out_dir = os.path.join(work, "profile")
    os.makedirs(out_dir, exist_ok=True)
    hooks = {stage: [{"path": python, "env": common.hook_env(),
                      "args": ["python3", "-X", "importtime", PROFILE_HOOK, out_dir,
                               stage, f"--conf-dir={conf_dir}"]}]
             for stage in ("prestart", "poststop")}
    bundle = make_bundle(os.path.join(work, "bundle-profile"), ["sh", "-c", "exit 0"],
                         rootfs=rootfs, hooks=hooks)
    _run_once(runc, bundle, "profile")
    summary = {}
    for stage in ("prestart", "poststop"):
        with open(os.path.join(out_dir, f"{stage}.json")) as f:
            summary[stage] = json.load(f)
    return summary


def _report(result, samples, startup, profile):
    med = {name: common.median(values) for name, values in samples.items()}
    ratio = med["kcm"] / med["noop"]
    result.row("kcm / no-op Python hooks", f"{ratio:.3f}", f"<= {TARGET}", ratio <= TARGET)
    result.row("kcm / no hooks", f"{med['kcm'] / med['none']:.3f}")
    result.row("median runc run: none | no-op | kcm",
               " | ".join(common.ms(med[name]) for name in VARIANTS))
    per_hook = (med["kcm"] - med["noop"]) / 2
    result.row("kcm hook cost over a no-op hook, each", common.ms(per_hook))
    result.row("python3 -c pass | no-op hook, outside runc",
               f"{common.ms(startup['pass'])} | {common.ms(startup['noop'])}")
    for stage, prof in profile.items():
        parts = ", ".join(f"{name} {value:.1f}" for name, value in prof["phases"])
        result.row(f"profile of one {stage} (ms)", parts)
        result.row(f"  {stage} imports (ms, cumulative)",
                   ", ".join(f"{name} {value:.1f}" for name, value in prof["imports"][:5]))
    result.raw = {"seconds": samples, "median": med, "startup": startup,
                  "profile": profile}
