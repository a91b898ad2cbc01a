"""The OCI state a runtime gives a hook on stdin, and the bundle it names.

Runtime spec, "State" and "Lifecycle": the state has ociVersion, id, status,
pid (absent once the container has stopped), bundle and annotations. Runtimes
differ: runc sends status "creating" to prestart where Podman's conmon path
sends "created", so the stage comes from the command line, never from here.
`bundle` may be relative to the hook's working directory. Unknown fields are
ignored.
"""

import errno
import json
import os
import re
import stat

from .errors import StateError

POOL_KEY = "kcm.pool"
POOL_ENV = "KCM_POOL"
MAX_STATE_BYTES = 1 << 20
MAX_CONFIG_BYTES = 16 << 20
# A pool name is a directory name made by init: checked against the pools on
# disk as well, but refused first when it could not be a plain file name.
POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class State:
    def __init__(self, container_id, bundle, pid, annotations):
        self.id = container_id
        self.bundle = bundle
        self.pid = pid
        self.annotations = annotations
        self._config = None

    def config(self):
        """The bundle's config.json as a dict, read once."""
        if self._config is None:
            self._config = read_config(self.bundle)
        return self._config

    def pool_request(self):
        """(pool name, its source) from annotations or env; (None, None) if unnamed."""
        if POOL_KEY in self.annotations:
            return self.annotations[POOL_KEY], "state annotation"
        config = self.config()
        annotations = config.get("annotations")
        annotations = {} if annotations is None else annotations
        if not isinstance(annotations, dict):
            raise StateError(f"{self.bundle}/config.json: 'annotations' is not "
                             "an object")
        if POOL_KEY in annotations:
            return _string(annotations[POOL_KEY], "config.json annotation kcm.pool"), \
                "config.json annotation"
        process = config.get("process")
        env = process.get("env") if isinstance(process, dict) else None
        for entry in env if isinstance(env, list) else ():
            if isinstance(entry, str) and entry.startswith(POOL_ENV + "="):
                return entry[len(POOL_ENV) + 1:], "process environment"
        return None, None


def read_state(stream, need_pid):
    """Parse the state JSON from a binary stream; raise StateError on bad input."""
    data = stream.read(MAX_STATE_BYTES + 1)
    if not data.strip():
        raise StateError("no OCI state on stdin: a runtime passes the container "
                         "state as JSON; run this from a hook")
    if len(data) > MAX_STATE_BYTES:
        raise StateError(f"OCI state on stdin exceeds {MAX_STATE_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise StateError(f"OCI state is not UTF-8 (byte {err.start})") from None
    except ValueError as err:
        raise StateError(f"OCI state is not JSON: {err}") from None
    except RecursionError:
        raise StateError("OCI state is nested too deeply to be a container's") from None
    if not isinstance(doc, dict):
        raise StateError(f"OCI state is a JSON {type(doc).__name__}, not an object")

    container_id = doc.get("id")
    if not isinstance(container_id, str) or not container_id:
        raise StateError("OCI state has no 'id' string")
    if len(container_id) > 1024 or not container_id.isprintable():
        raise StateError("OCI state 'id' is longer than 1024 characters or unprintable")

    bundle = doc.get("bundle")
    if not isinstance(bundle, str) or not bundle:
        raise StateError(f"OCI state of {container_id} has no 'bundle' path string")

    pid = doc.get("pid")
    if need_pid or pid is not None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise StateError(f"OCI state of {container_id}: 'pid' must be a positive "
                             f"integer, got {pid!r}")

    annotations = doc.get("annotations")
    annotations = {} if annotations is None else annotations
    if not isinstance(annotations, dict):
        raise StateError(f"OCI state of {container_id}: 'annotations' is not an object")
    if POOL_KEY in annotations:
        _string(annotations[POOL_KEY], "annotation kcm.pool")
    return State(container_id, os.path.abspath(bundle), pid, annotations)


def read_config(bundle):
    """The bundle's config.json as a dict: a regular file, never through a symlink.

    O_NONBLOCK keeps a FIFO in its place from stalling the hook; the file is
    refused before a byte of it is read.
    """
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StateError(f"bundle {bundle} has no config.json") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise StateError(f"{path} is a symlink: the hook reads the bundle's own "
                             "config.json only") from None
        raise StateError(f"cannot read {path}: {err.strerror}") from err
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StateError(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise StateError(f"{path} exceeds {MAX_CONFIG_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise StateError(f"{path} is not JSON: {err}") from None
    except RecursionError:
        raise StateError(f"{path} is nested too deeply to be a bundle's") from None
    if not isinstance(doc, dict):
        raise StateError(f"{path} is not a JSON object")
    return doc


def check_pool_name(name, source):
    """Refuse a name that could not be a pool directory, before any lookup."""
    if not isinstance(name, str) or not POOL_NAME.fullmatch(name):
        shown = str(name) if len(str(name)) <= 80 else f"{str(name)[:80]}..."
        raise StateError(f"pool name {shown!r} from the {source} is not a pool name "
                         "(letters, digits, '.', '_', '-'; at most 64): "
                         "run kcm-hook describe for the pools")
    return name


def _string(value, what):
    if not isinstance(value, str):
        raise StateError(f"{what} must be a string, got {type(value).__name__}")
    return value
