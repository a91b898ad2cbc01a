"""dockerd's daemon.json: registering the kcm runtime without losing anything.

The file is parsed as a plain document: every key and runtime install does
not own is kept, in its order, with the file's indent width and mode. A file
dockerd could not read either is refused and left untouched.
"""

import json
import os
import stat

from .errors import ConfigError
from .pools import write_atomic

DOCKER_RUNTIME = "kcm"


class DockerConfig:
    """dockerd's daemon.json as found, and the change install makes to it."""

    def __init__(self, path, text, mode):
        self.path, self.text, self.mode = path, text, mode
        self.new_text, self.changes, self.backup = None, [], None

    @classmethod
    def load(cls, path):
        """Read and parse `path`; refuse what dockerd could not read either."""
        path = os.path.realpath(path)
        try:
            with open(path, "rb") as f:
                data, mode = f.read(), stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        except FileNotFoundError:
            if not os.path.isdir(os.path.dirname(path)):
                raise ConfigError(f"{os.path.dirname(path)} does not exist: is Docker "
                                  "installed? Check --docker-config") from None
            return cls(path, None, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror}") from err
        try:
            return cls(path, data.decode("utf-8"), mode)
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text; fix it (left untouched)") \
                from None

    def document(self):
        if self.text is None or not self.text.strip():
            return {}
        try:
            doc = json.loads(self.text)
        except ValueError as err:
            raise ConfigError(f"{self.path} is not valid JSON ({err}); fix it, then "
                              "run install again (it was left untouched)") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.path} holds a JSON {type(doc).__name__}, not an "
                              "object; fix it (left untouched)")
        return doc

    def merged(self, runtime_path, default_runtime):
        """Add runtime kcm (and default-runtime); keep every other key."""
        doc = self.document()
        runtimes = doc.setdefault("runtimes", {})
        if not isinstance(runtimes, dict):
            raise ConfigError(f"{self.path}: 'runtimes' is not an object; fix it "
                              "(left untouched)")
        self.changes += _set_runtime(runtimes, runtime_path)
        if default_runtime and doc.get("default-runtime") != DOCKER_RUNTIME:
            was = doc.get("default-runtime")
            doc["default-runtime"] = DOCKER_RUNTIME
            self.changes.append(f'set default-runtime to "{DOCKER_RUNTIME}"'
                                + (f" (was {json.dumps(was)})" if was else ""))
        if self.changes:
            self.new_text = json.dumps(doc, indent=_indent(self.text),
                                       ensure_ascii=False) + "\n"
        return self

    def write(self):
        """Back the file up, then replace it; return what was written."""
        if self.new_text is None:
            return []
        written = []
        if self.text is not None:
            self.backup = _backup_path(self.path)
            write_atomic(self.backup, self.text, mode=self.mode)
            written.append(f"wrote {self.backup}")
        write_atomic(self.path, self.new_text, mode=self.mode)
        return written + [f"wrote {self.path}"]


def _set_runtime(runtimes, runtime_path):
    entry = runtimes.get(DOCKER_RUNTIME)
    if isinstance(entry, dict) and entry.get("path") == runtime_path:
        return []
    if isinstance(entry, dict):
        runtimes[DOCKER_RUNTIME] = {**entry, "path": runtime_path}
        return [f"changed runtimes.{DOCKER_RUNTIME}.path from "
                f"{json.dumps(entry.get('path'))} to {json.dumps(runtime_path)}"]
    runtimes[DOCKER_RUNTIME] = {"path": runtime_path}
    return [f'added runtimes.{DOCKER_RUNTIME} = {{"path": {json.dumps(runtime_path)}}}']


def _indent(text):
    """The indent width of the first indented line of `text`, else 2."""
    for line in (text or "").splitlines():
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            return len(line) - len(stripped)
    return 2


def _backup_path(path):
    import time

    base = f"{path}.kcm-backup-{time.strftime('%Y%m%dT%H%M%S')}"
    candidate, n = base, 1
    while os.path.lexists(candidate):
        candidate, n = f"{base}.{n}", n + 1
    return candidate
