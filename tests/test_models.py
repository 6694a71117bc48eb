from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardmon.keys import Keys
from shardmon.models import (
    CRASH_TRACEBACK_LIMIT,
    MalformedData,
    RestartType,
    crash_metadata,
    new_event,
    parse_event,
    parse_sample,
)
from shardmon.render import format_uptime


def _event(**metadata: object):  # type: ignore[no-untyped-def]
    return new_event(
        "startup",
        shards=(0, 1),
        node="h:1",
        system="Music Legends Bot",
        environment="Production",
        version="2.0.0",
        metadata=dict(metadata),
    )


def test_event_json_has_the_seed_fields_and_round_trips() -> None:
    event = _event(note="hé ⚠️")
    raw = json.loads(event.to_json())
    assert list(raw) == [
        "id", "timestamp", "type", "shard", "shards", "node", "system", "environment",
        "version", "metadata",
    ]  # fmt: skip
    assert raw["type"] == "startup" and raw["shard"] == 0 and raw["shards"] == [0, 1]
    assert raw["timestamp"].endswith("+00:00")
    assert "hé ⚠️" in event.to_json()  # UTF-8, not \\u escapes, for redis-cli readers
    assert parse_event(event.to_json()) == event


def test_unknown_restart_type_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="startup, manual, crash, deployment, scheduled"):
        new_event("reboot", shards=(0,), node="", system="", environment="", version="")
    assert [t.value for t in RestartType] == [
        "startup", "manual", "crash", "deployment", "scheduled",
    ]  # fmt: skip


def test_crash_metadata_is_bounded_and_keeps_the_traceback_tail() -> None:
    traceback = "x" * 1_000_000 + "ZeroDivisionError: boom"
    metadata = crash_metadata("e" * 10_000, traceback)
    assert len(metadata["traceback"]) < CRASH_TRACEBACK_LIMIT + 50
    assert metadata["traceback"].endswith("ZeroDivisionError: boom")
    assert len(metadata["error"]) < 2_100


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "{}",
        '{"ts": 1, "shard": 0}',
        '{"ts": 1, "shard": 0, "cpu": "high", "memory": 1, "memory_used_mb": 1,'
        ' "memory_total_mb": 1, "disk": 1, "cores": 1, "rss_mb": 1}',
        '{"ts": 1, "shard": -1, "cpu": 1, "memory": 1, "memory_used_mb": 1,'
        ' "memory_total_mb": 1, "disk": 1, "cores": 1, "rss_mb": 1}',
        '{"ts": 1, "shard": 0, "cpu": 150, "memory": 1, "memory_used_mb": 1,'
        ' "memory_total_mb": 1, "disk": 1, "cores": 1, "rss_mb": 1}',
        "[1, 2]",
    ],
)
def test_garbage_sample_raises_malformed(raw: str) -> None:
    with pytest.raises(MalformedData):
        parse_sample(raw)


@pytest.mark.parametrize(
    "raw",
    ["", "null", '{"id": "x"}', _event().to_json().replace('"startup"', '"reboot"'),
     _event().to_json().replace("+00:00", "")],
)  # fmt: skip
def test_garbage_event_raises_malformed(raw: str) -> None:
    with pytest.raises(MalformedData):
        parse_event(raw)


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_parsers_raise_only_malformed_on_any_input(raw: str | bytes) -> None:
    for parse in (parse_sample, parse_event):
        with contextlib.suppress(MalformedData):
            parse(raw)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.9, "42s"), (60, "1m"), (3599, "59m"), (3600, "1h 0m"),
     (2 * 86400 + 5 * 3600 + 30 * 60 + 12, "2d 5h 30m"), (-5, "0s")],
)  # fmt: skip
def test_format_uptime(seconds: float, text: str) -> None:
    assert format_uptime(seconds) == text


def test_every_key_of_a_deployment_shares_one_cluster_slot() -> None:
    from redis.crc import key_slot

    keys = Keys("acme")
    layout = keys.layout()
    # Concrete keys of the families, besides the layout's own keys and SCAN patterns.
    concrete = [
        keys.samples(3), keys.shard_info(3), keys.shard_restarts(3), keys.gateway_identify(3),
        keys.gateway_resume(3), keys.alert("memory", 3), keys.alert("offline"),
        keys.resolution("memory", 3), keys.rollup_minute(60), keys.rollup_hour(3600),
    ]  # fmt: skip
    names = [info.key for info in layout] + concrete
    assert keys.restarts == "shardmon:{acme}:restarts"
    assert keys.alert("memory", 3) == "shardmon:{acme}:alert:memory:3"
    assert all("{acme}" in name for name in names)
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith("shardmon:{acme}:") for name in names)


def _every_key_of(keys: Keys) -> dict[str, str]:
    """Each key method or attribute of Keys -> one key it returns (sample arguments filled in).

    Skipped: the prefix, the layout itself, the rollup SCAN pattern, the deployment name, and
    accessors that take a layout name (`pattern(name)`): they are not keys of their own."""
    import inspect

    not_keys = {"prefix", "layout", "rollup_minute_pattern", "deployment"}
    samples = {"shard": 3, "rule": "memory", "minute_start": 60, "hour_start": 3600}
    found: dict[str, str] = {}
    for name in dir(type(keys)):
        if name.startswith("_") or name in not_keys:
            continue
        member = getattr(keys, name)
        if isinstance(member, str):  # a property or a slot of a single key
            found[name] = member
            continue
        assert callable(member), f"Keys.{name}: neither a key nor a method"
        params = list(inspect.signature(member).parameters)
        if "name" in params:
            continue
        unknown = [param for param in params if param not in samples]
        assert not unknown, f"Keys.{name}: no sample argument for {unknown}; add one here"
        key = member(*(samples[param] for param in params))
        assert isinstance(key, str), f"Keys.{name} returned {key!r}, not a key"
        found[name] = key
    return found


def test_the_key_layout_covers_every_key_of_keys() -> None:
    """A key added to Keys without a `layout()` entry fails here: `shardmon keys` and the
    operators' redis-cli would not know it."""
    from fnmatch import fnmatchcase

    keys = Keys("acme")
    layout = keys.layout()
    every_key = _every_key_of(keys)
    assert len(every_key) >= 24  # the inspection above really found the key methods
    uncovered = {
        name: key
        for name, key in every_key.items()
        if not any(
            fnmatchcase(key, info.key) if info.family else key == info.key for info in layout
        )
    }
    assert not uncovered, f"keys without a layout entry: {uncovered}"
    # ...and every layout entry is the key of some method (no stale entry)
    stale = [
        info.name
        for info in layout
        if not any(
            fnmatchcase(key, info.key) if info.family else key == info.key
            for key in every_key.values()
        )
    ]
    assert not stale, f"layout entries no key method returns: {stale}"
    assert len({info.key for info in layout}) == len(layout)
