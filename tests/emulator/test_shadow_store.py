"""The Device Shadow service's document rules (devkit.emulator.shadow), pure: no broker, no HTTP."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Dict, List, Optional

import pytest

from devkit.emulator.shadow import (
    MAX_DEPTH,
    REQUEST_FILTERS,
    ShadowError,
    ShadowStore,
    notifications,
    parse_request_topic,
    topic_prefix,
)

THING, NAME = "gw-1", "defender-agent"


class Clock:
    def __init__(self, now: float = 1_700_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> ShadowStore:
    return ShadowStore(clock=clock)


def send(store: ShadowStore, document: Any, name: Optional[str] = NAME) -> Any:
    return store.update(THING, name, json.dumps(document).encode())


def rejected(store: ShadowStore, payload: bytes, name: Optional[str] = NAME) -> ShadowError:
    with pytest.raises(ShadowError) as caught:
        store.update(THING, name, payload)
    return caught.value


def test_update_merges_only_the_given_fields_and_null_deletes(store: ShadowStore) -> None:
    send(store, {"state": {"reported": {"a": 1, "b": {"c": 2, "d": 3}, "e": "x"}}})
    send(store, {"state": {"reported": {"b": {"c": 20, "d": None}, "e": None, "f": True}}})
    got = store.get(THING, NAME)
    assert got["state"] == {"reported": {"a": 1, "b": {"c": 20}, "f": True}}
    assert got["metadata"]["reported"].keys() == {"a", "b", "f"}  # a deleted field's metadata goes too
    assert got["metadata"]["reported"]["b"].keys() == {"c"}


def test_a_section_set_to_null_is_removed_with_its_metadata(store: ShadowStore) -> None:
    send(store, {"state": {"desired": {"a": 1}, "reported": {"a": 1}}})
    send(store, {"state": {"desired": None}})
    got = store.get(THING, NAME)
    assert got["state"] == {"reported": {"a": 1}}
    assert set(got["metadata"]) == {"reported"}
    send(store, {"state": {"desired": {"a": {"b": 1}}}})
    send(store, {"state": {"desired": {"a": {"b": None}}}})  # its last field deleted: the section goes too
    assert store.get(THING, NAME)["state"] == {"reported": {"a": 1}}


def test_arrays_are_replaced_whole_and_their_metadata_is_per_element(store: ShadowStore, clock: Clock) -> None:
    send(store, {"state": {"reported": {"ports": [22, 80, 443]}}})
    clock.now += 5
    send(store, {"state": {"reported": {"ports": [8080]}}})
    got = store.get(THING, NAME)
    assert got["state"]["reported"]["ports"] == [8080]
    assert got["metadata"]["reported"]["ports"] == [{"timestamp": int(clock.now)}]


def test_metadata_timestamps_per_leaf_and_only_for_what_changed(store: ShadowStore, clock: Clock) -> None:
    first = int(clock.now)
    send(store, {"state": {"reported": {"a": 1, "b": {"c": 2}}}})
    clock.now += 60
    accepted = send(store, {"state": {"reported": {"b": {"c": 3}}}}).accepted
    meta = store.get(THING, NAME)["metadata"]["reported"]
    assert meta == {"a": {"timestamp": first}, "b": {"c": {"timestamp": first + 60}}}
    assert accepted["metadata"] == {"reported": {"b": {"c": {"timestamp": first + 60}}}}
    assert accepted["timestamp"] == first + 60


def test_accepted_echoes_the_request_state_version_and_client_token(store: ShadowStore) -> None:
    update = send(store, {"state": {"desired": {"x": None, "y": 1}}, "clientToken": "tok-1"})
    assert update.accepted["state"] == {"desired": {"x": None, "y": 1}}
    assert update.accepted["version"] == 1 and update.accepted["clientToken"] == "tok-1"
    assert update.documents["clientToken"] == "tok-1" and update.delta is not None
    assert update.delta["clientToken"] == "tok-1"
    assert "clientToken" not in send(store, {"state": {"desired": {"y": 2}}}).accepted


def test_version_increments_per_update_and_a_stale_version_conflicts(store: ShadowStore) -> None:
    assert [send(store, {"state": {"reported": {"n": i}}}).accepted["version"] for i in range(3)] == [1, 2, 3]
    assert send(store, {"state": {"reported": {"n": 9}}, "version": 3}).accepted["version"] == 4
    error = rejected(store, json.dumps({"state": {"reported": {"n": 10}}, "version": 3, "clientToken": "c"}).encode())
    assert (error.code, error.message) == (409, "Version conflict")
    assert error.document(7) == {"code": 409, "message": "Version conflict", "timestamp": 7, "clientToken": "c"}
    assert store.get(THING, NAME)["state"]["reported"] == {"n": 9}  # the conflicting update changed nothing


def test_delta_holds_every_desired_field_that_differs_recursively(store: ShadowStore) -> None:
    send(store, {"state": {"reported": {"mode": "on", "limits": {"cpu": 80, "mem": 70}, "only_reported": 1}}})
    update = send(store, {"state": {"desired": {"mode": "on", "limits": {"cpu": 90, "mem": 70}, "new": [1]}}})
    assert update.delta is not None
    assert update.delta["state"] == {"limits": {"cpu": 90}, "new": [1]}
    assert set(update.delta["metadata"]) == {"limits", "new"}
    assert update.delta["version"] == 2
    # A later desired change: the delta still carries the earlier difference, not only the new one.
    later = send(store, {"state": {"desired": {"mode": "off"}}})
    assert later.delta is not None and later.delta["state"] == {"limits": {"cpu": 90}, "mode": "off", "new": [1]}
    assert store.get(THING, NAME)["state"]["delta"] == later.delta["state"]


def test_no_delta_once_reported_matches_and_json_types_are_strict(store: ShadowStore) -> None:
    send(store, {"state": {"desired": {"on": True, "n": 1, "ratio": 2}}})
    update = send(store, {"state": {"reported": {"on": 1, "n": 1.0, "ratio": 2}}})
    assert update.delta is not None and update.delta["state"] == {"on": True}  # true is not 1
    update = send(store, {"state": {"reported": {"on": True}}})
    assert update.delta is None
    assert "delta" not in store.get(THING, NAME)["state"]


def test_documents_carry_previous_and_current(store: ShadowStore) -> None:
    created = send(store, {"state": {"reported": {"a": 1}}})
    assert "previous" not in created.documents and created.documents["current"]["version"] == 1
    update = send(store, {"state": {"reported": {"a": 2}}, "clientToken": "t"})
    docs = update.documents
    assert docs["previous"]["state"] == {"reported": {"a": 1}} and docs["previous"]["version"] == 1
    assert docs["current"]["state"] == {"reported": {"a": 2}} and docs["current"]["version"] == 2
    assert set(docs["current"]) == {"state", "metadata", "version"}
    assert docs["clientToken"] == "t" and isinstance(docs["timestamp"], int)


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"\xff\xfe{}", 415, "Unsupported documented encoding; supported encoding is UTF-8"),
        (b"{not json", 400, "Invalid JSON"),
        (b"[1, 2]", 400, "Invalid JSON"),
        (b'{"desired": {"a": 1}}', 400, "Missing required node: state"),
        (b'{"state": "on"}', 400, "State node must be an object"),
        (b'{"state": {"desired": [1]}}', 400, "Desired node must be an object"),
        (b'{"state": {"reported": 3}}', 400, "Reported node must be an object"),
        (b'{"state": {"delta": {"a": 1}}}', 400, "State contains an invalid node: 'delta'"),
        (b'{"state": {}, "version": "3"}', 400, "Invalid version"),
        (b'{"state": {}, "version": true}', 400, "Invalid version"),
        (b'{"state": {}, "clientToken": 5}', 400, "Invalid clientToken"),
    ],
)
def test_rejections_with_the_guides_code_and_message(store: ShadowStore, payload: bytes, code: int,
                                                     message: str) -> None:
    error = rejected(store, payload)
    assert (error.code, error.message) == (code, message)
    assert store.document(THING, NAME) is None


def test_client_token_limit_is_64_bytes_not_characters(store: ShadowStore) -> None:
    send(store, {"state": {}, "clientToken": "t" * 64})
    error = rejected(store, json.dumps({"state": {}, "clientToken": "é" * 33}).encode())  # 66 bytes
    assert (error.code, error.message, error.client_token) == (400, "Invalid clientToken", None)


def nested(levels: int) -> Dict[str, Any]:
    """``levels`` objects below the section: nested(1) is {"k1": 1}."""
    value: Any = 1
    for level in range(levels, 0, -1):
        value = {f"k{level}": value}
    return value  # type: ignore[no-any-return]


def test_nesting_depth_limit(store: ShadowStore) -> None:
    send(store, {"state": {"reported": nested(MAX_DEPTH)}})
    error = rejected(store, json.dumps({"state": {"reported": nested(MAX_DEPTH + 1)}, "clientToken": "d"}).encode())
    assert (error.code, error.message) == (400, "JSON contains too many levels of nesting; maximum is 6")
    assert error.client_token == "d"
    arrays: Any = [[[[[[1]]]]]]  # six levels of arrays under the section's object: seven
    assert rejected(store, json.dumps({"state": {"reported": {"a": arrays}}}).encode()).code == 400


def test_size_limit_counts_desired_and_reported_not_metadata(store: ShadowStore) -> None:
    # {"reported":{"a":"xxx"}} is 19 bytes + the value: fill to exactly 8192.
    exact = 8192 - len('{"reported":{"a":""}}')
    send(store, {"state": {"reported": {"a": "x" * exact}}, "clientToken": "k"})
    assert len(json.dumps(store.get(THING, NAME))) > 8192  # metadata and version come on top
    error = rejected(store, json.dumps({"state": {"reported": {"a": "x" * (exact + 1)}}}).encode())
    assert (error.code, error.message) == (413, "The payload exceeds the maximum size allowed")


def test_size_limit_applies_to_the_merged_document(store: ShadowStore) -> None:
    send(store, {"state": {"reported": {"a": "x" * 5000}}})
    error = rejected(store, json.dumps({"state": {"desired": {"b": "y" * 5000}}, "clientToken": "m"}).encode())
    assert (error.code, error.client_token) == (413, "m")
    assert store.get(THING, NAME)["version"] == 1  # nothing stored


def test_get_and_delete_of_a_missing_shadow_are_404(store: ShadowStore) -> None:
    for call in (store.get, store.delete):
        with pytest.raises(ShadowError) as caught:
            call(THING, "nope", b'{"clientToken": "g"}')
        assert (caught.value.code, caught.value.message) == (404, "No shadow exists with name: 'nope'")
        assert caught.value.client_token == "g"


def test_get_answers_state_with_delta_metadata_version_and_token(store: ShadowStore, clock: Clock) -> None:
    send(store, {"state": {"desired": {"a": 2}, "reported": {"a": 1, "b": 0}}})
    got = store.get(THING, NAME, b'{"clientToken": "g1"}')
    assert got["state"] == {"desired": {"a": 2}, "reported": {"a": 1, "b": 0}, "delta": {"a": 2}}
    assert set(got["metadata"]) == {"desired", "reported"}
    assert (got["version"], got["timestamp"], got["clientToken"]) == (1, int(clock.now), "g1")
    assert "clientToken" not in store.get(THING, NAME, b"")


def test_delete_then_recreate_continues_the_version(store: ShadowStore) -> None:
    send(store, {"state": {"reported": {"a": 1}}})
    send(store, {"state": {"reported": {"a": 2}}})
    deleted = store.delete(THING, NAME, b'{"clientToken": "del"}')
    assert deleted["version"] == 2 and deleted["clientToken"] == "del" and "timestamp" in deleted
    assert store.document(THING, NAME) is None and store.names(THING) == []
    assert send(store, {"state": {"reported": {"a": 3}}}).accepted["version"] == 3


def test_named_and_classic_shadows_are_separate_and_listed_by_name(store: ShadowStore) -> None:
    send(store, {"state": {"reported": {"where": "named-b"}}}, name="b")
    send(store, {"state": {"reported": {"where": "named-a"}}}, name="a")
    send(store, {"state": {"reported": {"where": "classic"}}}, name=None)
    assert store.names(THING) == ["a", "b"]
    assert store.get(THING, None)["state"]["reported"] == {"where": "classic"}
    with pytest.raises(ShadowError) as caught:
        store.get(THING, "c")
    assert caught.value.code == 404


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "$package", "a/b"])
def test_shadow_names_outside_the_pattern_are_refused(store: ShadowStore, name: str) -> None:
    assert rejected(store, b'{"state": {}}', name=name).code == 400


def test_topics_and_notifications(store: ShadowStore) -> None:
    assert parse_request_topic(f"$aws/things/{THING}/shadow/name/{NAME}/update") == (THING, NAME, "update")
    assert parse_request_topic(f"$aws/things/{THING}/shadow/get") == (THING, None, "get")
    for other in (f"$aws/things/{THING}/shadow/name/{NAME}/update/accepted", f"$aws/things/{THING}/defender/metrics/json",
                  f"$aws/things/{THING}/shadow/name/{NAME}/list", "dt/x/shadow/get"):
        assert parse_request_topic(other) is None
    assert "$aws/things/+/shadow/name/+/update" in REQUEST_FILTERS
    update = send(store, {"state": {"desired": {"a": 1}}})
    sent: List[str] = [topic for topic, _ in notifications(THING, NAME, update)]
    prefix = topic_prefix(THING, NAME)
    assert sent == [f"{prefix}/update/delta", f"{prefix}/update/documents"]
    update = send(store, {"state": {"reported": {"a": 1}}})
    assert [topic for topic, _ in notifications(THING, NAME, update)] == [f"{prefix}/update/documents"]


def test_concurrent_updates_lose_nothing(store: ShadowStore) -> None:
    """The MQTT worker and the HTTP threads share one store: every update gets its own version."""
    def writer(index: int) -> None:
        for step in range(50):
            send(store, {"state": {"reported": {f"w{index}": step}}})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: without the lock, updates get lost
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
    got = store.get(THING, NAME)
    assert got["version"] == 400
    assert got["state"]["reported"] == {f"w{i}": 49 for i in range(8)}
