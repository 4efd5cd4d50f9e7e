"""Consent services: versions, publishing, decisions, carry-over, leaving, erasure, paper forms,
the ``consent_changed`` signal (no HTTP)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engage.accounts.models import Role
from engage.consent import decisions, erasure, errors, page_queries, queries, versions
from engage.consent.models import (
    CollectionMethod,
    ConsentChoice,
    ConsentEvent,
    ConsentFormVersion,
    ConsentHistoryIsAppendOnly,
    ConsentParticipant,
    ConsentReceipt,
    ConsentScope,
    Decision,
    ErasureRequest,
    ErasureStatus,
    ScopeKind,
    VersionStatus,
)
from engage.consent.receipts import verify
from engage.consent.seed import FIRST_FORM, FIRST_SCOPES
from engage.signals import consent_changed
from engage.timeutil import utcnow
from tests.consent_support import (
    NEW_SCOPE,
    OPTIONAL,
    REQUIRED,
    decide,
    events_of,
    issuer,
    join,
    later,
    ledger_size,
    publish,
    reworded,
    user,
)


@pytest.fixture
def staff(make_user):
    return make_user(Role.STAFF)


@pytest.fixture
def person(make_user):
    return make_user(Role.PARTICIPANT)


@pytest.fixture
def first(session, staff):
    """The seed form, published as version 1."""
    return publish(session, staff)


# Drafting and publishing -------------------------------------------------------------------------
def test_only_staff_draft_and_one_draft_at_a_time(session, staff, person):
    with pytest.raises(errors.NotAllowed):
        versions.create_draft(session, user(session, person), FIRST_FORM, utcnow())
    draft = versions.create_draft(session, user(session, staff), FIRST_FORM, utcnow())
    assert (draft.number, draft.status) == (1, VersionStatus.DRAFT)
    with pytest.raises(errors.DraftExists, match="Version 1 is already a draft"):
        versions.create_draft(session, user(session, staff), FIRST_FORM, utcnow())


def test_publishing_fixes_the_version_and_records_hash_grade_and_revisions(session, staff, first):
    session.expire_all()
    version = session.get(ConsentFormVersion, first.id)
    assert version.status == VersionStatus.PUBLISHED
    assert version.text_sha256 == versions.text_sha256(FIRST_FORM.body)
    assert version.reading_grade is not None and version.reading_grade <= 8
    scopes = queries.scopes_of(session, version.id)
    assert [s.code for s in scopes] == [d.code for d in FIRST_SCOPES]
    assert {s.revision for s in scopes} == {1}


def test_a_published_version_cannot_be_edited_even_bypassing_the_services(session, staff, first):
    staff_user = user(session, staff)
    version = session.get(ConsentFormVersion, first.id)
    scope = queries.scopes_of(session, version.id)[0]
    details = versions.VersionDetails("New title", "b", "s", "e", "en")
    with pytest.raises(errors.VersionImmutable):
        versions.update_draft(session, staff_user, version, details, utcnow())
    with pytest.raises(errors.VersionImmutable):
        versions.add_scope(session, staff_user, version, NEW_SCOPE, utcnow())
    with pytest.raises(errors.VersionImmutable):
        versions.remove_scope(session, staff_user, scope, utcnow())
    with pytest.raises(errors.VersionImmutable):
        versions.publish_version(
            session, staff_user, version, justification=None, now=utcnow(), max_grade=8
        )
    session.rollback()
    # The ORM guard refuses direct changes too.
    version = session.get(ConsentFormVersion, first.id)
    version.body = "quietly changed"
    with pytest.raises(ConsentHistoryIsAppendOnly):
        session.flush()
    session.rollback()
    scope = session.get(ConsentScope, scope.id)
    scope.explanation = "quietly changed"
    with pytest.raises(ConsentHistoryIsAppendOnly):
        session.flush()
    session.rollback()
    session.expire_all()
    assert session.get(ConsentFormVersion, first.id).body == FIRST_FORM.body


def test_changes_make_a_new_version_that_supersedes_the_old(session, staff, first):
    second = publish(session, staff, reworded("GENOMIC_DATA") + [NEW_SCOPE])
    session.expire_all()
    old, new = session.get(ConsentFormVersion, first.id), session.get(ConsentFormVersion, second.id)
    assert (old.status, new.status) == (VersionStatus.SUPERSEDED, VersionStatus.PUBLISHED)
    assert old.superseded_at is not None and new.number == 2
    revisions = {s.code: s.revision for s in queries.scopes_of(session, new.id)}
    assert revisions["GENOMIC_DATA"] == 2 and revisions["BIOBANK_SAMPLES"] == 2
    assert revisions["SHARE_RECORDS"] == 1  # unchanged: keeps its revision
    diff = versions.diff_scopes(
        queries.scopes_of(session, old.id), queries.scopes_of(session, new.id)
    )
    assert [s.code for s in diff.added] == ["BIOBANK_SAMPLES"]
    assert [new.code for _old, new in diff.changed] == ["GENOMIC_DATA"]
    assert diff.removed == [] and len(diff.unchanged) == len(FIRST_SCOPES) - 1


def test_only_one_published_version_even_if_two_are_forced(session, staff, first):
    session.add(
        ConsentFormVersion(
            number=9,
            status=VersionStatus.PUBLISHED,
            title="x",
            body="x",
            summary="x",
            ethics_reference="x",
            language="en",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()


def test_scope_codes_are_checked_and_unique_within_a_version(session, staff):
    staff_user = user(session, staff)
    draft = versions.create_draft(session, staff_user, FIRST_FORM, utcnow())
    versions.add_scope(session, staff_user, draft, NEW_SCOPE, utcnow())
    with pytest.raises(errors.InvalidScope, match="already has a scope"):
        versions.add_scope(session, staff_user, draft, NEW_SCOPE, utcnow())
    bad = versions.ScopeDetails("lower-case", "t", "e", ScopeKind.PURPOSE)
    with pytest.raises(errors.InvalidScope, match="capital letters"):
        versions.add_scope(session, staff_user, draft, bad, utcnow())
    unknown_duo = versions.ScopeDetails("OK_CODE", "t", "e", ScopeKind.PURPOSE, duo_code="XYZ")
    with pytest.raises(errors.InvalidScope, match="Data Use Ontology"):
        versions.add_scope(session, staff_user, draft, unknown_duo, utcnow())


HARD_SUMMARY = (
    "Notwithstanding any provision hereinbefore contained, the data controller shall, subject "
    "to applicable statutory requirements, irrevocably anonymise personal information "
    "pertaining to the participant."
)


def test_a_summary_above_the_reading_grade_needs_a_justification(session, staff):
    staff_user = user(session, staff)
    hard = versions.VersionDetails("Form", "Body", HARD_SUMMARY, "EC-1", "en")
    draft = versions.create_draft(session, staff_user, hard, utcnow())
    for details in FIRST_SCOPES:
        versions.add_scope(session, staff_user, draft, details, utcnow())
    for justification in (None, "   "):
        with pytest.raises(errors.JustificationRequired, match="above the limit of 8"):
            versions.publish_version(
                session, staff_user, draft, justification=justification, now=utcnow(), max_grade=8
            )
    assert draft.status == VersionStatus.DRAFT
    outcome = versions.publish_version(
        session,
        staff_user,
        draft,
        justification="Legal wording required by the ethics committee.",
        now=utcnow(),
        max_grade=8,
    )
    assert outcome.version.grade_justification.startswith("Legal wording")
    assert outcome.version.reading_grade > 8
    # A higher configured limit needs no justification.
    second = versions.create_draft(session, staff_user, hard, utcnow())
    versions.publish_version(
        session, staff_user, second, justification=None, now=utcnow(), max_grade=40
    )
    session.commit()
    assert session.get(ConsentFormVersion, second.id).status == VersionStatus.PUBLISHED


def test_a_refused_service_call_leaves_nothing_behind(session, staff):
    # Services never commit: what a failed call added goes with the caller's rollback.
    staff_user = user(session, staff)
    versions.create_draft(session, staff_user, FIRST_FORM, utcnow())
    with pytest.raises(errors.DraftExists):
        versions.create_draft(session, staff_user, FIRST_FORM, utcnow())
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentFormVersion)) == 0


def test_publishing_needs_scopes_and_a_required_one(session, staff):
    staff_user = user(session, staff)
    draft = versions.create_draft(session, staff_user, FIRST_FORM, utcnow())
    with pytest.raises(errors.PublishRefused, match="at least one scope"):
        versions.publish_version(
            session, staff_user, draft, justification=None, now=utcnow(), max_grade=8
        )
    versions.add_scope(session, staff_user, draft, NEW_SCOPE, utcnow())
    with pytest.raises(errors.PublishRefused, match="required"):
        versions.publish_version(
            session, staff_user, draft, justification=None, now=utcnow(), max_grade=8
        )


# Deciding ----------------------------------------------------------------------------------------
def test_a_decision_appends_events_updates_choices_and_issues_a_signed_receipt(
    app, session, first, person
):
    outcome = join(app, session, person, GENOMIC_DATA=True)
    events = events_of(session, person)
    assert [e.seq for e in events] == list(range(1, 9))
    assert {e.receipt_id for e in events} == {outcome.receipt.id}
    assert all(e.method == CollectionMethod.ONLINE and e.actor_id is None for e in events)
    choices = {
        c.scope_code: c.decision
        for c in session.scalars(sa.select(ConsentChoice).where(ConsentChoice.user_id == person.id))
    }
    assert choices["GENOMIC_DATA"] == Decision.PERMIT
    assert choices["COMMERCIAL_RESEARCH"] == Decision.DENY
    receipt = session.get(ConsentReceipt, outcome.receipt.id)
    assert verify(receipt.document, app.config["CONSENT_RECEIPT_KEY"]).is_valid
    doc = receipt.document
    participant = session.get(ConsentParticipant, person.id)
    assert doc["participant"] == participant.pseudonym
    assert uuid.UUID(doc["participant"]).version == 4  # random, not the user id or email
    assert person.email not in str(doc) and person.display_name not in str(doc)
    assert doc["form"]["text_sha256"] == versions.text_sha256(FIRST_FORM.body)
    assert doc["jurisdiction"] == "EU" and doc["collection_method"] == "online"
    assert doc["controller"]["name"] == "MS research network coordination centre"
    assert {s["code"]: s["decision"] for s in doc["scopes"]}["GENOMIC_DATA"] == "permit"
    assert doc["taking_part"] is True
    assert participant.reviewed_version_id == first.id


def test_repeating_a_choice_records_nothing(app, session, first, person):
    join(app, session, person)
    before = ledger_size(session)
    outcome = decide(app, session, person, {"SHARE_RECORDS": True})
    assert not outcome.changed and outcome.receipt is None
    assert ledger_size(session) == before


def test_not_allowing_after_allowing_is_a_withdrawal(app, session, first, person):
    join(app, session, person, SURVEY_RECONTACT=True)
    decide(app, session, person, {"SURVEY_RECONTACT": False})
    last = events_of(session, person)[-1]
    assert (last.scope_code, last.decision) == ("SURVEY_RECONTACT", Decision.WITHDRAW)
    assert [e.decision for e in events_of(session, person) if e.scope_code == "TRIAL_CONTACT"] == [
        Decision.DENY
    ]


def test_not_allowing_again_after_a_withdrawal_records_nothing(app, session, first, person):
    """A replayed Withdraw (a double-click, a resent form) finds the choice already so."""
    join(app, session, person, SURVEY_RECONTACT=True)
    decide(app, session, person, {"SURVEY_RECONTACT": False})
    before = ledger_size(session)
    outcome = decide(app, session, person, {"SURVEY_RECONTACT": False})
    assert not outcome.changed and outcome.receipt is None
    assert ledger_size(session) == before
    history = [e.decision for e in events_of(session, person) if e.scope_code == "SURVEY_RECONTACT"]
    assert history == [Decision.PERMIT, Decision.WITHDRAW]
    decide(app, session, person, {"SURVEY_RECONTACT": True})  # allowing again still counts
    assert events_of(session, person)[-1].decision == Decision.PERMIT


def test_only_participants_with_a_confirmed_address_decide(app, session, first, make_user):
    for role in (Role.CLINICIAN, Role.STAFF, Role.ORGANISATION, Role.CUSTODIAN):
        with pytest.raises(errors.NotAllowed):
            decide(app, session, make_user(role), {"SHARE_RECORDS": True})
        session.rollback()
    unconfirmed = make_user(Role.PARTICIPANT, email_verified=False)
    with pytest.raises(errors.NotAllowed, match="confirm your email"):
        decide(app, session, unconfirmed, {"SHARE_RECORDS": True})
    session.rollback()
    assert ledger_size(session) == 0


def test_unknown_scopes_superseded_and_unpublished_versions_are_refused(
    app, session, staff, first, person
):
    join(app, session, person)
    before = ledger_size(session)
    subject = user(session, person)
    state = queries.current_state(session, person.id)

    def attempt(codes, version_id):
        with pytest.raises(errors.ConsentError) as caught:
            decisions.record_decisions(
                session,
                subject,
                codes,
                version_id=version_id,
                state=state,
                now=utcnow(),
                issuer=issuer(app),
            )
        session.rollback()
        return caught.value

    assert isinstance(attempt({"NO_SUCH_SCOPE": True}, first.id), errors.UnknownScope)
    draft = versions.create_draft(session, user(session, staff), FIRST_FORM, utcnow())
    session.commit()
    assert isinstance(attempt({"GENOMIC_DATA": True}, draft.id), errors.VersionNotOpen)
    assert isinstance(attempt({"GENOMIC_DATA": True}, 999_999), errors.VersionNotOpen)
    versions.publish_version(
        session, user(session, staff), draft, justification=None, now=utcnow(), max_grade=8
    )
    session.commit()
    error = attempt({"GENOMIC_DATA": True}, first.id)
    assert isinstance(error, errors.VersionNotOpen) and "replaced by version 2" in str(error)
    assert ledger_size(session) == before


def test_a_stale_or_replayed_state_is_refused_and_nothing_recorded(app, session, first, person):
    join(app, session, person)
    old_state = queries.current_state(session, person.id)
    decide(app, session, person, {"GENOMIC_DATA": True})
    before = ledger_size(session)
    with pytest.raises(errors.StaleState):
        decisions.record_decisions(
            session,
            user(session, person),
            {"GENOMIC_DATA": False},
            version_id=first.id,
            state=old_state,
            now=utcnow(),
            issuer=issuer(app),
        )
    session.rollback()
    assert ledger_size(session) == before


def test_the_chain_cannot_fork_two_events_with_one_seq(app, session, first, person):
    join(app, session, person)
    head = events_of(session, person)[-1]
    session.add(
        ConsentEvent(
            user_id=head.user_id,
            seq=head.seq,
            scope_code=head.scope_code,
            decision=Decision.PERMIT,
            form_version_id=head.form_version_id,
            scope_revision=head.scope_revision,
            occurred_at=utcnow(),
            method=head.method,
            actor_id=None,
            receipt_id=head.receipt_id,
            prev_hash=head.prev_hash,
            hash="f" * 64,
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()


def test_events_and_receipts_are_append_only(app, session, first, person):
    outcome = join(app, session, person)
    event = events_of(session, person)[0]
    event.decision = Decision.DENY
    with pytest.raises(ConsentHistoryIsAppendOnly):
        session.flush()
    session.rollback()
    session.delete(session.get(ConsentReceipt, outcome.receipt.id))
    with pytest.raises(ConsentHistoryIsAppendOnly):
        session.flush()


# Carry-over between versions ---------------------------------------------------------------------
def test_unchanged_scopes_carry_over_changed_and_new_ones_wait_for_a_decision(
    app, session, staff, first, person
):
    join(app, session, person, GENOMIC_DATA=True, IMAGING_DATA=True)
    assert queries.permits(session, person.id, ["GENOMIC_DATA", "IMAGING_DATA"])
    second = publish(session, staff, reworded("GENOMIC_DATA") + [NEW_SCOPE])

    assert queries.permits(session, person.id, ["IMAGING_DATA"])  # unchanged: carried over
    assert queries.blocking_scopes(session, person.id, ["GENOMIC_DATA", "BIOBANK_SAMPLES"]) == [
        "GENOMIC_DATA",
        "BIOBANK_SAMPLES",
    ]
    board = page_queries.dashboard(session, person.id)
    assert board.needs_review and board.reviewed_version.id == first.id
    pending = [row.scope.code for row in board.rows if row.needs_decision]
    assert pending == ["GENOMIC_DATA", "BIOBANK_SAMPLES"]
    genomic = next(row for row in board.rows if row.scope.code == "GENOMIC_DATA")
    assert genomic.was_permitted_before and not genomic.is_permitted

    outcome = decide(app, session, person, {"GENOMIC_DATA": True, "BIOBANK_SAMPLES": False})
    assert outcome.reviewed
    assert queries.permits(session, person.id, ["GENOMIC_DATA", "IMAGING_DATA"])
    participant = session.get(ConsentParticipant, person.id)
    assert participant.reviewed_version_id == second.id
    genomic_events = [e for e in events_of(session, person) if e.scope_code == "GENOMIC_DATA"]
    assert [(e.decision, e.scope_revision) for e in genomic_events] == [
        (Decision.PERMIT, 1),
        (Decision.PERMIT, 2),
    ]


def test_a_removed_scope_no_longer_permits(app, session, staff, first, person):
    join(app, session, person, TRIAL_CONTACT=True)
    publish(session, staff, [d for d in FIRST_SCOPES if d.code != "TRIAL_CONTACT"])
    assert queries.blocking_scopes(session, person.id, ["TRIAL_CONTACT"]) == ["TRIAL_CONTACT"]
    with pytest.raises(errors.UnknownScope):
        decide(app, session, person, {"TRIAL_CONTACT": True})


def test_a_changed_required_scope_suspends_taking_part_until_decided(
    app, session, staff, first, person
):
    join(app, session, person, SURVEY_RECONTACT=True)
    publish(session, staff, reworded("SHARE_RECORDS"))
    # Nothing counts while a required scope awaits a decision.
    assert queries.blocking_scopes(session, person.id, ["SURVEY_RECONTACT"]) == ["SHARE_RECORDS"]
    decide(app, session, person, {"SHARE_RECORDS": True})
    assert queries.permits(session, person.id, ["SURVEY_RECONTACT"])


# One-step withdrawals and leaving ----------------------------------------------------------------
def test_withdraw_all_optional_in_one_step(app, session, first, person):
    join(app, session, person, GENOMIC_DATA=True, SURVEY_RECONTACT=True, TRIAL_CONTACT=True)
    outcome = decisions.withdraw_all_optional(
        session,
        user(session, person),
        version_id=first.id,
        state=queries.current_state(session, person.id),
        now=utcnow(),
        issuer=issuer(app),
    )
    session.commit()
    assert sorted(change.code for change in outcome.change.scopes) == [
        "GENOMIC_DATA",
        "SURVEY_RECONTACT",
        "TRIAL_CONTACT",
    ]
    assert all(change.after == Decision.WITHDRAW for change in outcome.change.scopes)
    assert queries.permits(session, person.id, REQUIRED)
    for code in OPTIONAL:
        assert not queries.permits(session, person.id, [code])
    assert len({e.receipt_id for e in events_of(session, person)}) == 2  # one receipt per step


def _leave(app, session, person, option):
    outcome = decisions.leave_programme(
        session,
        user(session, person),
        option,
        version_id=queries.current_version(session).id,
        state=queries.current_state(session, person.id),
        now=utcnow(),
        issuer=issuer(app),
    )
    session.commit()
    return outcome


def test_stop_contacting_withdraws_only_contact_scopes(app, session, first, person):
    join(app, session, person, SURVEY_RECONTACT=True, TRIAL_CONTACT=True, GENOMIC_DATA=True)
    outcome = _leave(app, session, person, decisions.LeaveOption.STOP_CONTACT)
    assert sorted(c.code for c in outcome.change.change.scopes) == [
        "SURVEY_RECONTACT",
        "TRIAL_CONTACT",
    ]
    assert queries.permits(session, person.id, ["GENOMIC_DATA", *REQUIRED])
    assert outcome.erasure is None


def test_stop_future_use_withdraws_everything(app, session, first, person):
    join(app, session, person, GENOMIC_DATA=True)
    _leave(app, session, person, decisions.LeaveOption.STOP_USE)
    board = page_queries.dashboard(session, person.id)
    assert not board.is_taking_part
    assert not any(row.is_permitted for row in board.rows)
    assert session.scalar(sa.select(sa.func.count()).select_from(ErasureRequest)) == 0


def test_asking_for_erasure_withdraws_everything_and_queues_one_request(
    app, session, staff, first, person
):
    join(app, session, person)
    outcome = _leave(app, session, person, decisions.LeaveOption.ERASE)
    assert outcome.erasure.status == ErasureStatus.RECEIVED
    assert not queries.permits(session, person.id, ["SHARE_RECORDS"])
    again = _leave(app, session, person, decisions.LeaveOption.ERASE)
    assert again.erasure.id == outcome.erasure.id and not again.change.changed

    staff_user, request = user(session, staff), session.get(ErasureRequest, outcome.erasure.id)
    with pytest.raises(errors.ErasureRefused, match="why"):
        erasure.set_erasure_status(
            session, staff_user, request, ErasureStatus.DECLINED, "", utcnow()
        )
    with pytest.raises(errors.NotAllowed):
        erasure.set_erasure_status(
            session, user(session, person), request, ErasureStatus.COMPLETED, None, utcnow()
        )
    erasure.set_erasure_status(
        session, staff_user, request, ErasureStatus.IN_PROGRESS, None, utcnow()
    )
    erasure.set_erasure_status(
        session, staff_user, request, ErasureStatus.COMPLETED, "Erased by all registries.", utcnow()
    )
    session.commit()
    with pytest.raises(errors.ErasureRefused):
        erasure.set_erasure_status(
            session, staff_user, request, ErasureStatus.IN_PROGRESS, None, utcnow()
        )
    assert request.handled_by_id == staff.id and request.note == "Erased by all registries."


# Paper forms recorded by staff -------------------------------------------------------------------
def test_staff_record_a_paper_form_with_the_actor_in_the_ledger(app, session, staff, first, person):
    answers = {code: True for code in REQUIRED} | {code: False for code in OPTIONAL}
    answers["IMAGING_DATA"] = True
    with pytest.raises(errors.NotAllowed):
        decisions.record_paper_consent(
            session,
            user(session, person),
            user(session, person),
            answers,
            version_id=first.id,
            state=None,
            reference="SCAN-1",
            now=utcnow(),
            issuer=issuer(app),
        )
    session.rollback()
    outcome = decisions.record_paper_consent(
        session,
        user(session, staff),
        user(session, person),
        answers,
        version_id=first.id,
        state=queries.current_state(session, person.id),
        reference="SCAN-2026-0042",
        now=utcnow(),
        issuer=issuer(app),
    )
    session.commit()
    events = events_of(session, person)
    assert len(events) == 8
    assert {(e.method, e.actor_id) for e in events} == {(CollectionMethod.PAPER, staff.id)}
    doc = outcome.receipt.document
    assert doc["collection_method"] == "paper" and doc["recorded_by_staff"] is True
    assert doc["paper_reference"] == "SCAN-2026-0042"
    assert queries.permits(session, person.id, ["IMAGING_DATA"])
    # Every scope must be answered on a paper form.
    with pytest.raises(errors.ConsentError, match="Decide on every scope"):
        decisions.record_paper_consent(
            session,
            user(session, staff),
            user(session, person),
            {"GENOMIC_DATA": True},
            version_id=first.id,
            state=queries.current_state(session, person.id),
            reference="SCAN-2",
            now=utcnow(),
            issuer=issuer(app),
        )


# The signal --------------------------------------------------------------------------------------
def test_consent_changed_is_sent_with_the_change(app, session, first, person):
    received = []

    def receiver(sender, **kwargs):
        received.append((sender, kwargs))

    join(app, session, person, SURVEY_RECONTACT=True)
    with consent_changed.connected_to(receiver):
        outcome = decide(app, session, person, {"SURVEY_RECONTACT": False, "GENOMIC_DATA": True})
        decide(app, session, person, {"GENOMIC_DATA": True})  # no change: no signal
    assert len(received) == 1
    sender, kwargs = received[0]
    change = kwargs["change"]
    assert sender == "engage.consent" and kwargs["session"] is not None
    assert change.user_id == person.id and change.receipt_id == outcome.receipt.id
    assert change.pseudonym == session.get(ConsentParticipant, person.id).pseudonym
    assert change.method == CollectionMethod.ONLINE and change.actor_id is None
    assert {
        (s.code, s.before, s.after, s.was_permitted, s.is_permitted) for s in change.scopes
    } == {
        ("SURVEY_RECONTACT", Decision.PERMIT, Decision.WITHDRAW, True, False),
        ("GENOMIC_DATA", Decision.DENY, Decision.PERMIT, False, True),
    }


def test_a_receiver_can_add_rows_in_the_same_transaction(app, session, first, person, make_user):
    # Receivers share the change's transaction: what they add commits (or rolls back) with it.
    def receiver(sender, session, change):
        session.add(
            ErasureRequest(
                user_id=change.user_id,
                status=ErasureStatus.RECEIVED,
                requested_at=change.occurred_at,
                updated_at=change.occurred_at,
                note="added by a receiver",
            )
        )

    with consent_changed.connected_to(receiver):
        join(app, session, person)
    session.expire_all()
    assert session.scalar(sa.select(ErasureRequest.note)) == "added by a receiver"


def test_time_stamps_of_later_changes_order_the_ledger(app, session, first, person):
    join(app, session, person, now=later(-2))
    decide(app, session, person, {"GENOMIC_DATA": True}, now=later(-1))
    times = [e.occurred_at for e in events_of(session, person)]
    assert times == sorted(times)


DENSE_GERMAN = (
    "Die Verarbeitung personenbezogener Gesundheitsdaten erfolgt ausschließlich auf Grundlage "
    "Ihrer ausdrücklichen, jederzeit widerrufbaren Einwilligungserklärung gemäß Artikel neun "
    "der Datenschutzgrundverordnung sowie entsprechender nationaler Durchführungsbestimmungen."
)


def test_a_german_summary_is_graded_with_a_german_formula(session, make_user):
    staff = make_user(Role.STAFF)
    details = dataclasses.replace(FIRST_FORM, summary=DENSE_GERMAN, language="de")
    with pytest.raises(errors.JustificationRequired, match="above the limit of 8"):
        publish(session, staff, details=details)
    session.rollback()
    version = publish(session, staff, details=details, justification="Rechtlich vorgeschrieben.")
    assert version.reading_grade is not None and version.reading_grade > 8


def test_a_summary_in_a_language_without_a_formula_is_published_unmeasured(session, make_user):
    staff = make_user(Role.STAFF)
    swedish = dataclasses.replace(
        FIRST_FORM,
        summary="Vi ber dig dela dina uppgifter med forskningsnätverket. Du kan ångra dig.",
        language="sv",
    )
    version = publish(session, staff, details=swedish)
    assert version.reading_grade is None
    assert version.grade_justification is None
