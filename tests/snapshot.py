"""A byte-for-byte picture of a directory tree, to prove a command changed nothing."""

import os
import stat


def tree(root):
    """{relative path: (type, mode, uid, gid, content or link target)} of `root`."""
    picture = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(directory, name)
            picture[os.path.relpath(path, root)] = _entry(path)
    picture["."] = _entry(root)
    return picture


def _entry(path):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        content = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            content = f.read()
    else:
        content = None
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            content)
