"""`make demo`: two real runc containers placed by kcm-hook, shown from inside.

Initialises a configuration directory inside the checkout (.demo/kcm),
starts one dataplane and one infra container with runc (busybox-static as
their whole root filesystem), prints the CPUs each container sees in its own
/proc/self/status and kcm-hook describe, shows a second dataplane container
being refused while the first runs, and cleans up.
"""

import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from integration.runc import (KCM_HOOK, Runc, kcm_hooks, make_bundle,  # noqa: E402
                              make_rootfs, read_when)

DEMO = os.path.join(REPO, ".demo")
CONF = os.path.join(DEMO, "kcm")
SHOW_AND_WAIT = ["sh", "-c", "grep Cpus_allowed_list /proc/self/status; exec sleep 600"]


def kcm(*args):
    result = subprocess.run([KCM_HOOK, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"demo: kcm-hook {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def held(conf):
    doc = json.loads(kcm("describe", f"--conf-dir={conf}"))
    return [f"{pool}/{cpus}: tasks {entry['tasks']} containers {entry['containers']}"
            for pool, p in sorted(doc["pools"].items())
            for cpus, entry in p["cpuLists"].items() if entry["tasks"]]


def main():
    if os.geteuid() != 0:
        sys.exit("demo: run as root (runc and cgroups need it)")
    shutil.rmtree(DEMO, ignore_errors=True)
    os.makedirs(DEMO)
    runc = Runc(os.path.join(DEMO, "runc-root"))
    rootfs = make_rootfs(os.path.join(DEMO, "rootfs"))
    hooks = kcm_hooks(CONF)

    print("$ kcm-hook init --num-dp-cores=1 --num-cp-cores=0")
    print(kcm("init", f"--conf-dir={CONF}", "--num-dp-cores=1", "--num-cp-cores=0"))
    try:
        for name, annotations in (("demo-dataplane", {"kcm.pool": "dataplane"}),
                                  ("demo-infra", {})):
            bundle = make_bundle(os.path.join(DEMO, name), SHOW_AND_WAIT,
                                 annotations=annotations, hooks=hooks, rootfs=rootfs)
            log = os.path.join(DEMO, f"{name}.log")
            if runc.run_detached(name, bundle, log) != 0:
                sys.exit(f"demo: runc run {name} failed: {open(log).read().strip()}")
            seen = read_when(log, "Cpus_allowed_list").split()[-1]
            label = annotations.get("kcm.pool", "(no annotation: default pool infra)")
            print(f"container {name:<15} kcm.pool={label:<38} sees CPUs {seen}")

        print("\n$ kcm-hook describe   (while both run)")
        print(kcm("describe", f"--conf-dir={CONF}"))
        print("held:", "; ".join(held(CONF)))

        bundle = make_bundle(os.path.join(DEMO, "demo-second"), SHOW_AND_WAIT,
                             annotations={"kcm.pool": "dataplane"}, hooks=hooks,
                             rootfs=rootfs)
        refused = runc.run("demo-second", bundle)
        print("\na second dataplane container is refused by the prestart hook:")
        message = refused.stderr.partition("kcm-hook: error:")[2].partition("\\n")[0]
        print(f"  runc exit status {refused.returncode}: kcm-hook: error:{message}")
        runc.delete("demo-second")
    finally:
        for name in ("demo-dataplane", "demo-infra", "demo-second"):
            runc.delete(name)
    print("\nafter runc delete (the poststop hook), held cpusets:",
          held(CONF) or "none")
    print(f"\nfull state: {KCM_HOOK} describe --conf-dir={CONF}")


if __name__ == "__main__":
    main()
