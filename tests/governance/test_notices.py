"""Consent notices: a participant's withdrawal of a scope an active project relies on reaches
the custodians of their registries that take part, without naming the participant; a custodian
acknowledges it once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engage import delivery
from engage.accounts import services as account_services
from engage.accounts.models import CustodianStatus, Role, User
from engage.consent.models import ConsentParticipant
from engage.signals import consent_changed
from engage.timeutil import utcnow
from governance import notices
from governance.errors import InvalidTransition, NotAllowed
from governance.models import ConsentNotice, DecisionThread, ProposalStatus, ThreadStatus
from tests.consent_support import decide, join, publish
from tests.governance.support import make_proposal, set_proposal_status

SUBJECT = "Consent withdrawn for a project your registry takes part in"


def approve(session, threads, *statuses):
    """Put each thread in its status; commits."""
    for thread, status in zip(threads, statuses, strict=True):
        session.get(DecisionThread, thread.id).status = ThreadStatus(status)
    session.commit()


@pytest.fixture
def world(app, session, make_registry, make_user):
    """A participant who allowed genomic and imaging data, enrolled in SMSREG only; active
    projects that need genomic data (approved by SMSREG and DMSR, declined by SMSREG) or
    imaging data, and a genomic project still out for decisions."""
    sms = make_registry(code="SMSREG", name="Swedish MS Registry")
    dms = make_registry(code="DMSR", name="Danish MS Registry")
    people = {
        "ana": make_user(Role.CUSTODIAN, registry=sms, email="ana@sms.example"),
        "bo": make_user(Role.CUSTODIAN, registry=sms, email="bo@sms.example"),
        "pending": make_user(
            Role.CUSTODIAN,
            registry=sms,
            email="pending@sms.example",
            custodian_status=CustodianStatus.PENDING,
        ),
        "dag": make_user(Role.CUSTODIAN, registry=dms, email="dag@dms.example"),
        "staff": make_user(Role.STAFF, email="staff@engage.example"),
        "participant": make_user(
            Role.PARTICIPANT, email="eva@example.org", display_name="Eva Participant"
        ),
    }
    publish(session, people["staff"])
    join(app, session, people["participant"], GENOMIC_DATA=True, IMAGING_DATA=True)
    account_services.set_enrolments(
        session, session.get(User, people["participant"].id), {sms.id}, utcnow()
    )
    session.commit()

    def project(title, scopes, statuses, status=ProposalStatus.ACTIVE):
        proposal, threads = make_proposal(
            session, people["staff"], [sms, dms], scopes=scopes, title=title
        )
        approve(session, threads, *statuses)
        set_proposal_status(session, proposal, status)
        return proposal

    projects = {
        "genomic": project("Genes and relapses", ["GENOMIC_DATA"], ("approved", "approved")),
        "declined": project("Declined genes", ["GENOMIC_DATA"], ("declined", "approved")),
        "imaging": project("MRI lesions", ["IMAGING_DATA"], ("approved", "approved")),
        "sent": project(
            "Still deciding", ["GENOMIC_DATA"], ("approved", "sent"), ProposalStatus.SENT
        ),
    }
    return {"sms": sms, "dms": dms, "projects": projects, **people}


def all_notices(session):
    session.expire_all()
    return session.scalars(sa.select(ConsentNotice).order_by(ConsentNotice.id)).all()


def test_withdrawing_a_relied_on_scope_notifies_the_registrys_custodians(
    app, session, mailbox, world
):
    decide(app, session, world["participant"], {"GENOMIC_DATA": False})
    delivery.deliver(app, now=utcnow())

    (notice,) = all_notices(session)
    pseudonym = session.get(ConsentParticipant, world["participant"].id).pseudonym
    assert (notice.registry_id, notice.proposal_id, notice.scope_code, notice.pseudonym) == (
        world["sms"].id,
        world["projects"]["genomic"].id,
        "GENOMIC_DATA",
        pseudonym,
    )
    for address in ("ana@sms.example", "bo@sms.example"):
        (message,) = mailbox.to(address)
        assert message.subject == f"{SUBJECT}: Genes and relapses"
        assert "Swedish MS Registry" in message.text
        assert message.link("/notices") == (
            "http://engage.test/governance/registries/SMSREG/notices"
        )
        # Nothing that identifies the participant.
        for identifying in (pseudonym, "Eva", "eva@example.org"):
            assert identifying not in message.text and identifying not in message.html
    # Not the pending custodian, nor a registry the participant is not enrolled in.
    assert mailbox.to("pending@sms.example") == mailbox.to("dag@dms.example") == []
    assert notices.open_notices(session, world["sms"].id) == [notice]
    assert notices.open_notices(session, world["dms"].id) == []


def test_withdrawing_a_scope_no_active_project_relies_on_creates_no_notice(
    app, session, mailbox, world
):
    decide(app, session, world["participant"], {"SURVEY_RECONTACT": True})
    decide(app, session, world["participant"], {"SURVEY_RECONTACT": False})
    # Allowing more creates nothing either.
    decide(app, session, world["participant"], {"TRIAL_CONTACT": True})
    delivery.deliver(app, now=utcnow())

    assert all_notices(session) == []
    assert mailbox.messages == []


def test_each_withdrawal_is_its_own_notice(app, session, world):
    decide(app, session, world["participant"], {"GENOMIC_DATA": False, "IMAGING_DATA": False})
    decide(app, session, world["participant"], {"GENOMIC_DATA": True})
    decide(app, session, world["participant"], {"GENOMIC_DATA": False})

    found = [(n.proposal_id, n.scope_code) for n in all_notices(session)]
    genomic, imaging = world["projects"]["genomic"].id, world["projects"]["imaging"].id
    assert found == [
        (genomic, "GENOMIC_DATA"),
        (imaging, "IMAGING_DATA"),
        (genomic, "GENOMIC_DATA"),
    ]
    assert len({n.receipt_id for n in all_notices(session)}) == 2


def test_a_notice_is_recorded_once_however_often_the_signal_is_sent(app, session, world):
    connected = len(consent_changed.receivers)
    notices.connect_receivers()  # the app connected it already: connecting again is a no-op
    assert len(consent_changed.receivers) == connected

    outcome = decide(app, session, world["participant"], {"GENOMIC_DATA": False})
    consent_changed.send("engage.consent", session=session, change=outcome.change)
    session.commit()

    assert len(all_notices(session)) == 1
    emails = session.execute(
        sa.text("SELECT count(*) FROM outbox_messages WHERE kind = 'governance_consent_notice'")
    ).scalar()
    assert emails == 2


def test_a_custodian_of_the_registry_acknowledges_a_notice_once(app, session, world):
    decide(app, session, world["participant"], {"GENOMIC_DATA": False})
    (notice,) = all_notices(session)
    now = utcnow()

    for outsider in ("dag", "pending", "staff"):
        with pytest.raises(NotAllowed):
            notices.acknowledge_notice(session, session.get(User, world[outsider].id), notice, now)
    notices.acknowledge_notice(session, session.get(User, world["ana"].id), notice, now)
    session.commit()
    with pytest.raises(InvalidTransition, match="already marked as dealt with"):
        notices.acknowledge_notice(session, session.get(User, world["bo"].id), notice, now)
    session.rollback()

    (notice,) = all_notices(session)
    assert (notice.acknowledged_by_id, notice.acknowledged_at) == (world["ana"].id, now)
    assert notices.open_notices(session, world["sms"].id) == []


def test_a_notice_acknowledged_before_its_email_left_is_not_sent(app, session, mailbox, world):
    decide(app, session, world["participant"], {"GENOMIC_DATA": False})
    (notice,) = all_notices(session)
    notices.acknowledge_notice(session, session.get(User, world["ana"].id), notice, utcnow())
    session.commit()
    delivery.deliver(app, now=utcnow())

    assert mailbox.messages == []
