"""The tamper-evident ledger and signed receipts: ``engage audit verify`` and
``engage consent verify-receipt``."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from engage.accounts import services as account_services
from engage.accounts.models import Role
from engage.consent import receipts
from engage.consent.ledger import hash_of
from engage.consent.models import ConsentChoice, ConsentReceipt
from engage.hashchain import GENESIS_HASH
from engage.timeutil import utcnow
from tests.consent_support import decide, events_of, join, publish


@pytest.fixture
def people(app, session, make_user):
    """Two participants with a few changes each on the published seed form."""
    publish(session, make_user(Role.STAFF))
    found = [make_user(Role.PARTICIPANT), make_user(Role.PARTICIPANT)]
    for person in found:
        join(app, session, person, GENOMIC_DATA=True)
        decide(app, session, person, {"GENOMIC_DATA": False, "SURVEY_RECONTACT": True})
    return found


def _tamper(session, *statements):
    """Run SQL behind the application's back, as an attacker with database access would."""
    session.rollback()
    for statement, params in statements:
        session.execute(sa.text(statement) if isinstance(statement, str) else statement, params)
    session.commit()


def _verify(runner):
    return runner.invoke(args=["audit", "verify"])


def test_each_participant_has_an_intact_chain(session, people):
    for person in people:
        events = events_of(session, person)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].prev_hash == GENESIS_HASH
        for previous, event in zip(events, events[1:], strict=False):
            assert event.prev_hash == previous.hash
        assert all(hash_of(event) == event.hash for event in events)


def test_audit_verify_passes_on_an_untouched_ledger(runner, people):
    result = _verify(runner)
    assert result.exit_code == 0, result.output
    assert "Consent ledger intact: 20 event(s) checked" in result.output


def test_audit_verify_reports_a_row_changed_in_sql(app, runner, session, people):
    target = events_of(session, people[1])[3]
    _tamper(
        session, ("UPDATE consent_events SET decision = 'permit' WHERE id = :id", {"id": target.id})
    )
    result = _verify(runner)
    assert result.exit_code != 0
    assert (
        f"consent event {target.id} (participant {people[1].id}, seq {target.seq}): hash does "
        "not match" in result.output
    )
    # The changed event is also the scope's current choice, which no longer matches it.
    assert f"current choice for {target.scope_code} is not this newest event" in result.output
    assert "2 problem(s)" in result.output  # nothing else is reported


def test_audit_verify_reports_a_forged_hash_and_the_broken_link_after_it(runner, session, people):
    events = events_of(session, people[0])
    _tamper(
        session,
        (
            "UPDATE consent_events SET scope_revision = 7, hash = :h WHERE id = :id",
            {"id": events[2].id, "h": "a" * 64},
        ),
    )
    result = _verify(runner)
    assert result.exit_code != 0
    assert f"consent event {events[2].id} " in result.output and "hash does not match" in (
        result.output
    )
    assert f"consent event {events[3].id} " in result.output
    assert "prev_hash is not the hash of the participant's previous event" in result.output


def test_audit_verify_reports_a_deleted_event(runner, session, people):
    events = events_of(session, people[0])
    # GENOMIC_DATA's first event is no longer the current choice, so no row refers to it.
    first_genomic = next(e for e in events if e.scope_code == "GENOMIC_DATA")
    gone_id, gone_seq = first_genomic.id, first_genomic.seq
    _tamper(session, ("DELETE FROM consent_events WHERE id = :id", {"id": gone_id}))
    result = _verify(runner)
    assert result.exit_code != 0
    assert f"expected seq {gone_seq}: an event is missing" in result.output


def test_audit_verify_reports_current_choices_and_masks_that_disagree(runner, session, people):
    person = people[0]
    with session.begin():
        session.execute(
            sa.update(ConsentChoice)
            .where(
                ConsentChoice.user_id == person.id,
                ConsentChoice.scope_code == "COMMERCIAL_RESEARCH",
            )
            .values(decision="permit")
        )
        session.execute(
            sa.text("UPDATE consent_participants SET permitted_mask = 0 WHERE user_id = :id"),
            {"id": people[1].id},
        )
    result = _verify(runner)
    assert result.exit_code != 0
    assert "the current choice for COMMERCIAL_RESEARCH is not this newest event" in result.output
    assert f"participant {people[1].id}: permitted_mask does not match" in result.output


def test_audit_verify_reports_registry_masks_that_disagree_or_are_missing(
    runner, session, people, make_registry
):
    north, south = make_registry(code="NORTH"), make_registry(code="SOUTH")
    for person in people:
        account_services.set_enrolments(session, person, {north.id, south.id}, utcnow())
    session.commit()
    assert _verify(runner).exit_code == 0
    with session.begin():
        session.execute(
            sa.text(
                "UPDATE consent_registry_masks SET permitted_mask = 0 "
                "WHERE user_id = :id AND registry_id = :registry"
            ),
            {"id": people[0].id, "registry": north.id},
        )
        session.execute(
            sa.text("DELETE FROM consent_registry_masks WHERE user_id = :id AND registry_id = :r"),
            {"id": people[1].id, "r": south.id},
        )
    result = _verify(runner)
    assert result.exit_code != 0
    assert (
        f"participant {people[0].id}: the registry mask for registry {north.id} differs"
        in result.output
    )
    assert f"participant {people[1].id}: no registry mask for registry {south.id}" in result.output


# Receipts ---------------------------------------------------------------------------------------
def _receipt_file(tmp_path, session, person, name="receipt.json"):
    event = events_of(session, person)[-1]
    document = session.get(ConsentReceipt, event.receipt_id).document
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2))
    return path, document


def test_verify_receipt_accepts_a_receipt_as_issued(runner, session, people, tmp_path):
    path, document = _receipt_file(tmp_path, session, people[0])
    result = runner.invoke(args=["consent", "verify-receipt", str(path)])
    assert result.exit_code == 0, result.output
    assert f"VALID: receipt {document['receipt_id']}" in result.output


@pytest.mark.parametrize(
    "tamper",
    [
        "decision changed",
        "participant changed",
        "scope added",
        "signature removed",
        "signature of another key",
        "form hash changed",
    ],
)
def test_verify_receipt_refuses_a_tampered_receipt(runner, session, people, tmp_path, tamper):
    path, document = _receipt_file(tmp_path, session, people[0])
    if tamper == "decision changed":
        document["scopes"][4]["decision"] = "permit"
    elif tamper == "participant changed":
        document["participant"] = "00000000-0000-4000-8000-000000000000"
    elif tamper == "scope added":
        document["scopes"].append({"code": "EXTRA", "decision": "permit"})
    elif tamper == "signature removed":
        del document["signature"]
    elif tamper == "signature of another key":
        document = receipts.sign(document, "a key that is not the platform's key at all")
    elif tamper == "form hash changed":
        document["form"]["text_sha256"] = "0" * 64
    path.write_text(json.dumps(document))
    result = runner.invoke(args=["consent", "verify-receipt", str(path)])
    assert result.exit_code != 0
    assert "INVALID" in result.output


@pytest.mark.parametrize("content", ["not json", "[1, 2]", "", '{"format": 1}'])
def test_verify_receipt_refuses_files_that_are_not_receipts(runner, tmp_path, content):
    path = tmp_path / "x.json"
    path.write_text(content)
    result = runner.invoke(args=["consent", "verify-receipt", str(path)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    missing = runner.invoke(args=["consent", "verify-receipt", str(tmp_path / "missing.json")])
    assert missing.exit_code != 0


def test_signatures_cover_the_canonical_json_whatever_the_layout():
    document = {
        "format": receipts.RECEIPT_FORMAT,
        "receipt_id": "r-1",
        "issued_at": "2026-01-02T03:04:05.000006+00:00",
        "jurisdiction": "SE",
        "controller": {"name": "Centre é"},
        "collection_method": "online",
        "recorded_by_staff": False,
        "participant": "p-1",
        "form": {
            "version": 1,
            "title": "Förm",
            "language": "sv",
            "ethics_reference": None,
            "published_at": None,
            "text_sha256": "0" * 64,
        },
        "taking_part": True,
        "scopes": [],
    }
    signed = receipts.sign(document, "k" * 40)
    reordered = json.loads(json.dumps(signed, indent=4, sort_keys=False, ensure_ascii=True))
    assert receipts.verify(reordered, "k" * 40).is_valid
    assert not receipts.verify(reordered, "x" * 40).is_valid
    assert signed["signature"]["algorithm"] == "HMAC-SHA256"
