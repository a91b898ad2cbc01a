"""A kcm hook that reports where its time goes: profile_hook.py OUT_DIR STAGE ARGS...

Run by runc in place of kcm-hook, under `python3 -X importtime`. It times the
imports kcm-hook needs, wraps the functions of the hook's path in timers, runs
the hook exactly as kcm-hook would, and writes OUT_DIR/STAGE.json. Its
stderr (the import times) goes to OUT_DIR/STAGE.importtime.
"""

import json
import os
import sys
import time

OUT_DIR, STAGE = sys.argv[1], sys.argv[2]
_log = os.open(os.path.join(OUT_DIR, f"{STAGE}.importtime"),
               os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(_log, 2)

_start = time.perf_counter()
# hooks is imported for its import time: prestart and poststop import it.
from kcm_hook import allocator, cgroups, cli, hooks, oci, pools  # noqa: E402,F401

IMPORTS = time.perf_counter() - _start

TIMED = [  # (label, owner, attribute): nested calls are counted in their callers too
    ("logging setup", cli, "setup_logging"),
    ("argument parsing", cli, "build_parser"),
    ("read state", oci, "read_state"),
    ("pool request (config.json)", oci.State, "pool_request"),
    ("find cgroup", cgroups, "cgroup_of"),
    ("lock wait", pools, "_flock"),
    ("allocate (under lock)", allocator, "allocate"),
    ("release (under lock)", allocator, "release"),
    ("cgroup write", cgroups.Cgroup, "confine"),
    ("atomic file writes", pools, "write_atomic"),
]
spent = {}


def timer(label, func):
    def wrapper(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - begin
    return wrapper


def imports_by_module(path):
    """{module: its own import time in ms} from -X importtime output."""
    found = {}
    with open(path) as f:
        for line in f:
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                found[parts[2].strip()] = int(parts[0].split(":")[-1]) / 1000
    return found


def main():
    for label, owner, attribute in TIMED:
        setattr(owner, attribute, timer(label, getattr(owner, attribute)))
    begin = time.perf_counter()
    code = cli.main(sys.argv[2:], prog="kcm-hook")
    total = time.perf_counter() - begin
    phases = [("kcm_hook import, wall", IMPORTS * 1000),
              ("cli.main (wall)", total * 1000)]
    phases += [(label, spent[label] * 1000) for label, _, _ in TIMED if label in spent]
    sys.stderr.flush()
    doc = {"phases": phases, "exit": code,
           "imports": imports_by_module(os.path.join(OUT_DIR, f"{STAGE}.importtime"))}
    with open(os.path.join(OUT_DIR, f"{STAGE}.json"), "w") as f:
        json.dump(doc, f)
    return code


if __name__ == "__main__":
    sys.exit(main())
