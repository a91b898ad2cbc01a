"""The kernel's cpulist syntax: "0-3,8,10-11".

One strict parser and one formatter, used for sysfs files, cgroup files and
the names of cpuset directories alike. See the kernel's
Documentation/admin-guide/cgroup-v1/cpusets.rst, "List format".
"""

from .errors import CpuListError

# No machine Linux supports has this many CPUs (NR_CPUS tops out at 8192);
# the bound keeps "0-999999999" from allocating a billion integers.
MAX_CPUS = 1 << 16


def parse(text, allow_empty=False):
    """Return the sorted CPU ids of `text`; raise CpuListError quoting the bad part."""
    stripped = text.strip()
    if not stripped:
        if allow_empty:
            return []
        raise CpuListError("empty cpulist: expected CPU ids such as '0-3,8'")
    cpus = set()
    for item in stripped.split(","):
        first, dash, last = item.partition("-")
        low = _cpu_id(first, item, text)
        high = _cpu_id(last, item, text) if dash else low
        if high < low:
            raise CpuListError(f"reversed range {item!r} in cpulist {text!r}")
        cpus.update(range(low, high + 1))
    return sorted(cpus)


def _cpu_id(token, item, text):
    if not token.isascii() or not token.isdigit():
        raise CpuListError(f"bad item {item!r} in cpulist {text!r}: expected N or A-B")
    value = int(token)
    if value >= MAX_CPUS:
        raise CpuListError(f"CPU id {token} in cpulist {text!r} exceeds {MAX_CPUS - 1}")
    return value


def format(cpus):
    """Return the canonical cpulist of `cpus`: ascending, runs as ranges."""
    ordered = sorted(set(cpus))
    runs = []
    for cpu in ordered:
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def is_canonical(text):
    """True when `text` parses and is already in canonical form."""
    try:
        return format(parse(text)) == text
    except CpuListError:
        return False
