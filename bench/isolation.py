"""Benchmark 5: does a dataplane container keep its core under noise?

The probe is a busybox shell counting to PROBE_COUNT in a dataplane
container; it starts when the host writes to a FIFO and signals the end
through another, so the time excludes the container's start. It runs alone,
beside an infra container (placed by kcm) running two busy loops, and beside
the same busy container started without kcm's hooks (unpinned). Throughput
is the alone time over the time under noise.
"""

import errno
import json
import os
import select
import time

from bench import common
from integration.runc import Runc, make_bundle, make_rootfs, wait_for

TITLE = "isolation: dataplane probe throughput under noise (fraction of alone)"
CONDITIONS = ["alone", "pinned noise", "unpinned noise"]
TARGET = 0.90
PROBE_COUNT = 300000
# The probe reports where it may run and its scheduler statistics (on-CPU and
# run-queue time in ns, Documentation/scheduler/sched-stats.rst): time lost to
# other tasks on its CPU shows as waiting, a slower CPU as more time on it.
PROBE = ("read go < /x/go; i=0; while [ $i -lt %d ]; do i=$((i+1)); done; "
         "{ grep Cpus_allowed_list /proc/self/status; cat /proc/$$/schedstat; } "
         "> /x/done" % PROBE_COUNT)
BUSY = "while :; do :; done & while :; do :; done"
DEADLINE = 60.0


def run(work, runs):
    result = common.Result(5, TITLE)
    conf_dir = common.host_conf(work)
    hooks = common.kcm_hooks(work, conf_dir)
    rootfs = make_rootfs(os.path.join(work, "rootfs"))
    fifo_dir = os.path.join(work, "fifos")
    os.makedirs(fifo_dir)
    probe = make_bundle(os.path.join(work, "probe"), ["sh", "-c", PROBE], rootfs=rootfs,
                        annotations={"kcm.pool": "dataplane"}, hooks=hooks)
    _bind(probe, fifo_dir, "/x")
    busy = {"pinned noise": make_bundle(os.path.join(work, "busy-kcm"),
                                        ["sh", "-c", BUSY], rootfs=rootfs, hooks=hooks),
            "unpinned noise": make_bundle(os.path.join(work, "busy-plain"),
                                          ["sh", "-c", BUSY], rootfs=rootfs)}
    runc = Runc(os.path.join(work, "runc-root"))
    samples = {name: [] for name in CONDITIONS}
    sched = {name: [] for name in CONDITIONS}  # (on-CPU, waiting) seconds
    seen = {name: set() for name in CONDITIONS}  # (probe CPUs, busy CPUs) observed
    try:
        _probe(runc, probe, fifo_dir, work)
        for _, condition in common.rounds(CONDITIONS, runs):
            noise = busy.get(condition)
            busy_cpus = _start(runc, "busy", noise, work) if noise else None
            try:
                seconds, probe_cpus, stats = _probe(runc, probe, fifo_dir, work)
            finally:
                if noise:
                    runc.delete("busy")
            samples[condition].append(seconds)
            seen[condition].add((probe_cpus, busy_cpus))
            sched[condition].append(stats)
    finally:
        runc.cleanup()
    _report(result, samples, seen, sched)
    return result


def _bind(bundle, source, target):
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["mounts"].append({"destination": target, "type": "bind", "source": source,
                             "options": ["rbind", "rw"]})
    with open(path, "w") as f:
        json.dump(config, f, indent=1)


def _start(runc, container_id, bundle, work):
    """Start a detached container; return the CPUs its init may run on."""
    log = os.path.join(work, f"{container_id}.log")
    if runc.run_detached(container_id, bundle, log) != 0:
        with open(log) as f:
            raise RuntimeError(f"runc run {container_id} failed: {f.read().strip()}")
    with open(f"/proc/{runc.state(container_id)['pid']}/status") as f:
        return next(line.split()[1] for line in f
                    if line.startswith("Cpus_allowed_list"))


def _probe(runc, bundle, fifo_dir, work):
    """(seconds once told to go, the CPUs it may use, (on-CPU, waiting) seconds)."""
    go, done = (os.path.join(fifo_dir, name) for name in ("go", "done"))
    answer = []
    for fifo in (go, done):
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
    _start(runc, "probe", bundle, work)
    try:
        [writer] = wait_for(lambda: _open_writer(go), DEADLINE,
                            "the probe to open /x/go")
        reader = os.open(done, os.O_RDONLY | os.O_NONBLOCK)
        try:
            start = time.perf_counter()
            os.write(writer, b"go\n")
            os.close(writer)
            # A FIFO reader polls readable once a writer has written or closed.
            poller = select.poll()
            poller.register(reader, select.POLLIN)
            if not poller.poll(DEADLINE * 1000):
                raise RuntimeError(f"the probe did not finish in {DEADLINE:g} s")
            seconds = time.perf_counter() - start
            wait_for(lambda: poller.poll(DEADLINE * 1000) and _drained(reader, answer),
                     DEADLINE, "the probe to close /x/done")
        finally:
            os.close(reader)
        # "Cpus_allowed_list: 1", then "<on-CPU ns> <waiting ns> <timeslices>"
        words = b"".join(answer).decode().split()
        return seconds, words[1], (int(words[2]) / 1e9, int(words[3]) / 1e9)
    finally:
        runc.delete("probe")


def _drained(fd, chunks):
    """Read what is there into `chunks`; True at end of file."""
    try:
        data = os.read(fd, 4096)
    except BlockingIOError:
        return False
    chunks.append(data)
    return not data


def _open_writer(path):
    """[fd] of a write end once the probe has opened the FIFO to read, else None."""
    try:
        return [os.open(path, os.O_WRONLY | os.O_NONBLOCK)]
    except OSError as err:
        if err.errno == errno.ENXIO:
            return None
        raise


def _report(result, samples, seen, sched):
    alone = common.median(samples["alone"])
    for condition in CONDITIONS:
        shown = "; ".join(f"probe on {p}" + (f", busy on {b}" if b else "")
                          for p, b in sorted(seen[condition], key=str))
        result.row(f"{condition}: CPUs allowed", shown)
        on_cpu, waiting = (common.median(v) for v in zip(*sched[condition]))
        result.row(f"{condition}: probe on-CPU | waiting",
                   f"{common.ms(on_cpu)} | {common.ms(waiting)}")
        if condition == "alone":
            result.row("alone: probe time", common.ms(alone))
            continue
        fraction = alone / common.median(samples[condition])
        pinned = condition == "pinned noise"
        result.row(f"{condition}: throughput / alone", f"{fraction:.2f}",
                   f">= {TARGET}" if pinned else "(for comparison)",
                   fraction >= TARGET if pinned else None)
    result.notes.append("kcm moves containers, not host processes: anything else "
                        "running on the dataplane CPU still competes with the probe, "
                        "and shows as its waiting time")
    result.raw = {"seconds": samples, "probe_count": PROBE_COUNT, "schedstat": sched,
                  "placements": {c: sorted(map(list, p), key=str)
                                 for c, p in seen.items()}}
