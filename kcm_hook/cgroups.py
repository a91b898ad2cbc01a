"""Finding a process's cpuset cgroup and confining it.

/proc/<pid>/cgroup names the process's cgroup in each hierarchy
("ID:controllers:/path"; "0::/path" for the unified hierarchy), relative to
the root of that hierarchy. /proc/self/mountinfo says where each hierarchy is
mounted and which part of it the mount shows (field 4, "root"). See the
kernel's Documentation/admin-guide/cgroup-v1/cpusets.rst and cgroup-v2.rst.

A cgroup v1 cpuset controller, when mounted, is used; otherwise the unified
hierarchy, when the process's cgroup there has the cpuset controller. A
hybrid host (v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified)
is therefore handled as v1.
"""

import os

from .errors import CgroupError
from .procfs import procfs_root


class Cgroup:
    """A cpuset cgroup directory and the file names its version uses."""

    def __init__(self, path, version):
        self.path = path
        self.version = version

    def __repr__(self):
        return f"Cgroup({self.path!r}, v{self.version})"

    def cpus_file(self):
        return os.path.join(self.path, "cpuset.cpus")

    def read_cpus(self):
        return _read(self.cpus_file()).strip()

    def confine(self, cpus):
        """Restrict the cgroup to `cpus` (a canonical cpulist)."""
        if not cpus:
            raise CgroupError("refusing to write an empty cpulist to "
                              f"{self.cpus_file()}")
        if self.version == 1:
            self._ensure_mems()
        _write(self.cpus_file(), cpus)

    def _ensure_mems(self):
        # A v1 cpuset with empty cpuset.mems cannot hold tasks; inherit the
        # parent's memory nodes when the runtime left it empty.
        mems = os.path.join(self.path, "cpuset.mems")
        if not _read(mems).strip():
            parent = os.path.join(os.path.dirname(self.path), "cpuset.mems")
            _write(mems, _read(parent).strip())


def cgroup_of(pid):
    """The cpuset cgroup of `pid`."""
    memberships = _memberships(pid)
    mounts = _cgroup_mounts()
    for version, key in ((1, "cpuset"), (2, "")):
        if key in memberships and key in mounts:
            if memberships[key] == "/":
                raise CgroupError(
                    f"process {pid} is in the root cpuset cgroup, shared with the "
                    "whole host: kcm confines a container's own cgroup only; run "
                    "the process in a cgroup of its own (a container)")
            root, mountpoint = mounts[key]
            path = _join(mountpoint, root, memberships[key], pid)
            if version == 2 and not _has_cpuset_v2(path):
                continue
            return Cgroup(path, version)
    raise CgroupError(f"process {pid} is in no cpuset cgroup: mount the cpuset "
                      "controller (cgroup v1) or enable it in "
                      "cgroup.subtree_control (v2)")


def _memberships(pid):
    """{"cpuset": path} for v1, {"": path} for the unified hierarchy."""
    path = os.path.join(procfs_root(), str(pid), "cgroup")
    text = _read(path, missing=f"process {pid} does not exist (no {path})")
    found = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier_id, controllers, cgroup_path = parts
        if hier_id == "0" and controllers == "":
            found[""] = cgroup_path
        elif "cpuset" in controllers.split(","):
            found["cpuset"] = cgroup_path
    return found


def _cgroup_mounts():
    """{"cpuset": (root, mountpoint)} and {"": (root, mountpoint)} from mountinfo."""
    text = _read(os.path.join(procfs_root(), "self", "mountinfo"))
    mounts = {}
    for line in text.splitlines():
        # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        fstype, super_opts = tail[0], tail[2].split(",")
        if fstype == "cgroup" and "cpuset" in super_opts:
            mounts.setdefault("cpuset", (root, mountpoint))
        elif fstype == "cgroup2":
            mounts.setdefault("", (root, mountpoint))
    return mounts


def _join(mountpoint, root, cgroup_path, pid):
    if root != "/" and not (cgroup_path == root or cgroup_path.startswith(root + "/")):
        raise CgroupError(f"cgroup {cgroup_path} of process {pid} lies outside the "
                          f"mounted part {root} of its hierarchy")
    relative = cgroup_path[len(root):] if root != "/" else cgroup_path
    path = os.path.normpath(os.path.join(mountpoint, relative.lstrip("/")))
    if path != mountpoint and not path.startswith(mountpoint.rstrip("/") + "/"):
        raise CgroupError(f"cgroup path {cgroup_path} of process {pid} escapes "
                          f"{mountpoint}")
    return path


def _has_cpuset_v2(path):
    return os.path.exists(os.path.join(path, "cpuset.cpus"))


def _unescape(field):
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _read(path, missing=None):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        raise CgroupError(missing or f"{path} does not exist") from None
    except OSError as err:
        raise CgroupError(f"cannot read {path}: {err.strerror}") from err


def _write(path, text):
    # cgroup files are kernel interfaces, written in place: there is no
    # partial state to protect with a rename.
    try:
        # Bytes: the text is a canonical cpulist, and the ascii codec would
        # be one more import for the hooks.
        with open(path, "wb") as f:
            f.write(text.encode())
    except OSError as err:
        raise CgroupError(f"cannot write {text!r} to {path}: {err.strerror} "
                          f"(errno {err.errno})") from err
