"""`make bench`: run kcm-hook's benchmarks and print one table.

Every figure is printed beside its target; the raw samples go to
bench/results/<time>.json (and latest.json). Needs root: the benchmarks run
real runc containers and make real cgroups. Exit status: 0 when the
benchmarks ran (whatever the figures), 1 when one could not, 2 bad usage.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

RESULTS = os.path.join(common.REPO, "bench", "results")
BENCHMARKS = {  # number: (module name, title); imported when run
    1: ("hookcost", "hook cost per runc run"),
    2: ("dockercost", "Docker run with --runtime kcm"),
    3: ("concurrency", "parallel prestarts"),
    4: ("scale", "describe / sweep / check at 64, 512, 4096 CPUs"),
    5: ("isolation", "CPU-bound probe under noise"),
    6: ("reclaim", "reclaim with reconcile --watch"),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21,
                        help="alternating runs per figure (default 21: 20+, and odd so "
                             "the median is one run)")
    parser.add_argument("--only", default="",
                        help="comma-separated benchmark numbers (default: all)")
    args = parser.parse_args(argv)
    try:
        args.only = [int(n) for n in args.only.split(",") if n] or list(BENCHMARKS)
    except ValueError:
        parser.error(f"--only={args.only!r}: expected numbers such as 1,3")
    unknown = [n for n in args.only if n not in BENCHMARKS]
    if unknown or args.runs < 1:
        parser.error(f"--only: no benchmark {unknown}" if unknown
                     else "--runs must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench: run as root: the benchmarks start runc containers and make "
              "cgroups", file=sys.stderr)
        return 1
    machine = common.machine()
    common.compile_sources(common.hook_python())
    work = tempfile.mkdtemp(prefix="kcm-bench-")
    results, failed = [], False
    try:
        for number in args.only:
            result = run_one(number, work, args.runs)
            failed |= "failed" in result.raw
            results.append(result)
            print(f"bench: {number} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(machine, args.runs, results)
    path = write_results(machine, args.runs, results)
    print(f"\nraw results: {os.path.relpath(path, common.REPO)}")
    return 1 if failed else 0


def run_one(number, work, runs):
    """Run benchmark `number` in a directory of its own; a failure becomes a row."""
    module_name, title = BENCHMARKS[number]
    directory = os.path.join(work, f"b{number}")
    os.makedirs(directory)
    started = time.monotonic()
    try:
        module = __import__(f"bench.{module_name}", fromlist=["run"])
    except ModuleNotFoundError as err:
        return common.unavailable(number, title,
                                  f"bench/{module_name}.py missing ({err})")
    try:
        result = module.run(directory, runs)
    except Exception as err:  # report and go on to the next benchmark
        traceback.print_exc()
        result = common.Result(number, getattr(module, "TITLE", title))
        result.row("FAILED", f"{type(err).__name__}: {err}")
        result.raw["failed"] = f"{type(err).__name__}: {err}"
    result.raw["wall_seconds"] = round(time.monotonic() - started, 1)
    return result


def print_table(machine, runs, results):
    print(f"\nkcm-hook benchmarks on {machine['host']}: {machine['cpus']} CPUs "
          f"({machine['cpu']}), kernel {machine['kernel']}, {machine['runc']}, "
          f"{machine['dockerd']}, hooks run by {machine['hook_python']}")
    print(f"{machine['date']}; load at start {machine['load_at_start']}; medians over "
          f"{runs} alternating runs unless stated\n")
    header = ("figure", "value", "target")
    rows = [row for result in results for row in result.rows]
    # As wide as the longest entry, up to a cap: a longer one overflows its
    # column rather than widening every line of the table.
    widths = [2 + min(cap, max([len(name)] + [len(getattr(row, name)) for row in rows]))
              for name, cap in zip(header, (48, 40, 18))]
    print(f"{'#':<3}{header[0]:<{widths[0]}}{header[1]:<{widths[1]}}"
          f"{header[2]:<{widths[2]}}verdict")
    for result in results:
        print(f"{result.number:<3}{result.title}")
        for row in result.rows:
            print(f"   {row.figure:<{widths[0]}}{row.value:<{widths[1]}}"
                  f"{row.target:<{widths[2]}}{row.verdict}")
        for note in result.notes:
            print(f"   note: {note}")


def write_results(machine, runs, results):
    os.makedirs(RESULTS, exist_ok=True)
    doc = {"machine": machine, "runs": runs, "benchmarks": [
        {"number": r.number, "title": r.title, "notes": r.notes,
         "rows": [{"figure": row.figure, "value": row.value, "target": row.target,
                   "verdict": row.verdict} for row in r.rows],
         "raw": r.raw} for r in results]}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(RESULTS, f"{stamp}.json")
    text = json.dumps(doc, indent=1, default=str) + "\n"
    for target in (path, os.path.join(RESULTS, "latest.json")):
        tmp = f"{target}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    return path


if __name__ == "__main__":
    sys.exit(main())
