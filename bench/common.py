"""What every benchmark shares: statistics, result rows, the hook's interpreter.

A benchmark returns a `Result`: table rows (figure, value, target, verdict)
and the raw samples, which run.py writes as JSON. Benchmarks report; they
never assert on a timing.
"""

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOOP_HOOK = "import sys,json; json.load(sys.stdin)"


@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    met: object = None  # True, False, or None when the row has no target

    @property
    def verdict(self):
        return {True: "met", False: "MISSED", None: ""}[self.met]


@dataclass
class Result:
    number: int
    title: str
    rows: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def row(self, figure, value, target="", met=None):
        self.rows.append(Row(figure, value, target, met))


def unavailable(number, title, reason):
    """The result of a benchmark that cannot run here, saying why."""
    result = Result(number, title)
    result.row("not available", reason)
    result.raw["unavailable"] = reason
    return result


def median(values):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values, pct):
    """Nearest-rank percentile: the smallest value with pct % of samples at or below."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def rounds(variants, runs):
    """Yield (round, variant) for `runs` rounds, rotating the order each round.

    Alternating the variants spreads slow periods of a noisy machine over all
    of them; rotating keeps any one from always running first.
    """
    for index in range(runs):
        shift = index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            yield index, variant


def timed_run(argv, **kwargs):
    """Run `argv`; return (seconds, CompletedProcess)."""
    start = time.perf_counter()
    done = subprocess.run(argv, **kwargs)
    return time.perf_counter() - start, done


def hook_python():
    """The interpreter hooks run with: the system python3 a hooks file would name."""
    for candidate in ("/usr/bin/python3", getattr(sys, "_base_executable", None),
                      sys.executable):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no python3 interpreter found for the hooks")


def hook_env():
    """The environment of a hook process: the source tree on the path, nothing else.

    runc gives a hook exactly the `env` of its entry, so the kcm hook and the
    no-op hooks start from the same, otherwise empty, environment.
    """
    return [f"PYTHONPATH={REPO}"]


def hook_environ():
    """hook_env() as a dict, for running kcm-hook directly."""
    return dict(item.split("=", 1) for item in hook_env())


def kcm_hooks(work, conf_dir):
    """Hook entries running kcm-hook from the source tree, like the no-op hooks.

    The program is `work`/kcm-hook, written here.
    """
    from integration.runc import hook_command

    launcher = write_launcher(os.path.join(work, "kcm-hook"), hook_python())
    return {stage: [{**hook_command(stage, conf_dir, launcher), "env": hook_env()}]
            for stage in ("prestart", "poststop")}


def write_launcher(path, python):
    """A kcm-hook program like the one pip writes, run by `python`."""
    with open(path, "w") as f:
        f.write(f"#!{python}\nimport sys\nfrom kcm_hook.cli import entry_point\n"
                "sys.exit(entry_point())\n")
    os.chmod(path, 0o755)
    return path


def compile_sources(python):
    """Byte-compile the package, as an install would, so no run pays for it."""
    subprocess.run([python, "-m", "compileall", "-q", os.path.join(REPO, "kcm_hook")],
                   check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})


def host_conf(work):
    """A configuration directory on this machine's real topology.

    One dataplane core and no controlplane: on the 2-CPU machine the numbers
    are taken on, dataplane gets CPU 1 and infra CPU 0.
    """
    from kcm_hook import layout, topology

    path = os.path.join(work, "kcm")
    layout.init(path, topology.discover("/sys"), 1, 0)
    return path


def machine():
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    load = os.getloadavg()
    return {"host": platform.node(), "cpu": model, "cpus": os.cpu_count(),
            "kernel": platform.release(), "python": platform.python_version(),
            "hook_python": hook_python(),
            "runc": _version([shutil.which("runc") or "runc", "--version"]),
            "dockerd": _version([shutil.which("dockerd") or "dockerd", "--version"]),
            "load_at_start": [round(x, 2) for x in load],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return out.splitlines()[0] if out else "unknown"
