"""Hash chains: any change, removal or reordering of an event is detected."""

from __future__ import annotations

import hashlib

import pytest

from engage.hashchain import (
    GENESIS_HASH,
    ChainLink,
    LedgerReport,
    Ledgers,
    canonical_json,
    chain_hash,
    verify_chain,
    verify_numbered_chain,
)


def build(events: list[dict]) -> list[ChainLink]:
    links, prev = [], GENESIS_HASH
    for n, fields in enumerate(events):
        digest = chain_hash(fields, prev)
        links.append(ChainLink(where=f"event {n}", fields=fields, prev_hash=prev, hash=digest))
        prev = digest
    return links


EVENTS = [{"seq": n, "decision": "permit" if n % 2 else "deny"} for n in range(1, 5)]


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_the_hash_covers_the_fields_and_the_previous_hash():
    expected = hashlib.sha256(b'{"prev_hash":"' + b"0" * 64 + b'","seq":1}').hexdigest()
    assert chain_hash({"seq": 1}, GENESIS_HASH) == expected
    with pytest.raises(ValueError):
        chain_hash({"prev_hash": "x"}, GENESIS_HASH)


def test_an_intact_chain_has_no_problems():
    assert list(verify_chain(iter(build(EVENTS)))) == []


def test_a_changed_event_is_found():
    links = build(EVENTS)
    links[1] = ChainLink(
        "event 1", {**links[1].fields, "decision": "withdraw"}, links[1].prev_hash, links[1].hash
    )
    assert list(verify_chain(iter(links))) == [
        "event 1: its content does not match its hash (changed after the fact)"
    ]


@pytest.mark.parametrize("change", ["remove", "swap"])
def test_a_removed_or_reordered_event_breaks_the_chain(change):
    links = build(EVENTS)
    if change == "remove":
        del links[1]
    else:
        links[1], links[2] = links[2], links[1]
    problems = list(verify_chain(iter(links)))
    assert any("chain broken" in problem for problem in problems)


def test_ledgers_run_every_registered_verifier_once():
    ledgers = Ledgers()
    ledgers.register("first", lambda session: LedgerReport(checked=3))
    ledgers.register("second", lambda session: LedgerReport(checked=1, problems=["bad"]))
    with pytest.raises(ValueError):
        ledgers.register("first", lambda session: LedgerReport(checked=0))
    reports = ledgers.verify_all(session=None)
    assert {name: (r.checked, r.problems) for name, r in reports.items()} == {
        "first": (3, []),
        "second": (1, ["bad"]),
    }


def test_a_numbered_chain_reports_a_missing_event_and_a_changed_one_and_counts_the_rest():
    intact = LedgerReport(checked=0)
    verify_numbered_chain(iter(build(EVENTS)), intact)
    assert intact == LedgerReport(checked=4, problems=[])

    gap = LedgerReport(checked=0)
    events = [dict(event) for event in EVENTS]
    del events[1]  # seq 2 removed and the chain rebuilt over the rest: only the gap shows
    verify_numbered_chain(iter(build(events)), gap)
    assert gap.checked == 3
    assert gap.problems == ["event 1: expected seq 2: an event is missing before it"]

    changed = build(EVENTS)
    changed[2] = ChainLink(
        "event 2", {**changed[2].fields, "decision": "x"}, changed[2].prev_hash, changed[2].hash
    )
    report = LedgerReport(checked=0)
    verify_numbered_chain(iter(changed), report)
    assert report.problems == [
        "event 2: its content does not match its hash (changed after the fact)"
    ]
