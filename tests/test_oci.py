import io
import json
import os

import pytest

from kcm_hook import oci
from kcm_hook.errors import StateError


def state(doc, need_pid=True):
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return oci.read_state(io.BytesIO(data), need_pid=need_pid)


def bundle_with(tmp_path, config):
    path = tmp_path / "bundle"
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_runc_prestart_state(tmp_path):
    s = state({"ociVersion": "1.0.2-dev", "id": "c1", "status": "creating", "pid": 42,
               "bundle": str(tmp_path), "annotations": {"kcm.pool": "dataplane"}})

    assert (s.id, s.pid, s.bundle) == ("c1", 42, str(tmp_path))
    assert s.pool_request() == ("dataplane", "state annotation")


def test_poststop_state_without_pid():
    s = state({"ociVersion": "1.0.2", "id": "c1", "status": "stopped",
               "bundle": "/b"}, need_pid=False)

    assert s.pid is None


def test_unknown_fields_and_empty_annotations_are_fine(tmp_path):
    bundle = bundle_with(tmp_path, {"process": {"env": ["PATH=/bin"]}})
    s = state({"id": "c1", "pid": 1, "bundle": bundle, "annotations": {},
               "status": "created", "future": {"x": 1}})

    assert s.pool_request() == (None, None)


def test_relative_bundle_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    bundle_with(tmp_path, {"annotations": {"kcm.pool": "infra"}})
    monkeypatch.chdir(tmp_path)

    s = state({"id": "c1", "pid": 1, "bundle": "bundle"})

    assert s.bundle == os.path.join(str(tmp_path), "bundle")
    assert s.pool_request() == ("infra", "config.json annotation")


def test_pool_from_process_environment(tmp_path):
    env = ["A=1", "KCM_POOL=controlplane"]
    bundle = bundle_with(tmp_path, {"process": {"env": env}})

    assert state({"id": "c", "pid": 1, "bundle": bundle}).pool_request() == \
        ("controlplane", "process environment")


def test_state_annotation_wins_over_config(tmp_path):
    bundle = bundle_with(tmp_path, {"annotations": {"kcm.pool": "infra"}})
    s = state({"id": "c", "pid": 1, "bundle": bundle,
               "annotations": {"kcm.pool": "dataplane"}})

    assert s.pool_request()[0] == "dataplane"


@pytest.mark.parametrize("doc, message", [
    (b"", "no OCI state"),
    (b"{", "not JSON"),
    (b"[]", "JSON list, not an object"),
    (b"\xff\xfe", "not UTF-8"),
    ({"pid": 1, "bundle": "/b"}, "no 'id'"),
    ({"id": "c", "pid": 1}, "no 'bundle'"),
    ({"id": "c", "bundle": "/b"}, "'pid' must be a positive integer, got None"),
    ({"id": "c", "bundle": "/b", "pid": 0}, "got 0"),
    ({"id": "c", "bundle": "/b", "pid": -3}, "got -3"),
    ({"id": "c", "bundle": "/b", "pid": "42"}, "got '42'"),
    ({"id": "c", "bundle": "/b", "pid": True}, "got True"),
    ({"id": "c", "bundle": "/b", "pid": 1, "annotations": []}, "not an object"),
    ({"id": "c", "bundle": "/b", "pid": 1, "annotations": {"kcm.pool": 3}},
     "must be a string"),
])
def test_bad_state_is_refused_with_the_reason(doc, message):
    with pytest.raises(StateError, match=message):
        state(doc)


def test_oversized_state_is_refused():
    with pytest.raises(StateError, match="exceeds"):
        state(b" " * oci.MAX_STATE_BYTES + b"{}")


@pytest.mark.parametrize("name", ["../infra", "/etc", "infra/../dataplane", "", ".",
                                  "..", "a\nb", "x" * 65, "d\u00e9", "-x"])
def test_names_that_cannot_be_pools_are_refused_before_any_lookup(name):
    with pytest.raises(StateError, match="is not a pool name"):
        oci.check_pool_name(name, "test")
