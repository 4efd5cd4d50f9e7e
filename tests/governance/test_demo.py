"""Governance's demo data (``engage demo seed``): one proposal waiting in the demo custodian's
inbox, one active project in the public register, a valid decision ledger, and nothing new on
a second run."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.audit import AuditEvent
from engage.demo import seed_demo
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import Topic, TopicStatus
from governance import demo, queries
from governance.models import (
    CatalogueVariable,
    DecisionEvent,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ProposalStatusChange,
    ThreadStatus,
)


@pytest.fixture
def catalogue(app, session):
    """The core catalogue's variables the demo requests (the migration seeds them; the tests
    empty every table)."""
    codes = sorted({*demo.OUT_FOR_DECISIONS.variable_codes, *demo.ACTIVE_PROJECT.variable_codes})
    session.add_all(
        CatalogueVariable(
            code=code, name=code.title(), domain="Core", description=code, created_at=utcnow()
        )
        for code in codes
    )
    session.commit()
    app.instance_path = str(app.config["MAIL_OUTBOX_DIR"]) + "-instance"


def _sizes(session) -> tuple[int, ...]:
    return tuple(
        session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
        for model in (Proposal, DecisionThread, DecisionEvent, ProposalStatusChange, AuditEvent)
    )


def _proposal(session, story: demo.DemoProposal) -> Proposal:
    return session.scalars(sa.select(Proposal).where(Proposal.title == story.title)).one()


def test_seed_sends_one_proposal_and_makes_one_active_project(runner, session, catalogue):
    before = utcnow()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    assert (
        "Governance demo: “Disease-modifying therapy and COVID-19 outcomes” is sent to DMSR, "
        "OFSEP, SMSREG" in first.output
    )
    assert "is an active project (approved by SMSREG)" in first.output

    staff = session.scalar(sa.select(User).where(User.role == Role.STAFF))
    sent = _proposal(session, demo.OUT_FOR_DECISIONS)
    assert (sent.status, sent.proposer_id, sent.topic_id) == (ProposalStatus.SENT, staff.id, None)
    assert timedelta(days=20) < sent.decision_deadline - before <= timedelta(days=21)
    smsreg = queries.registry_by_code(session, "SMSREG")
    inbox = queries.registry_inbox(session, smsreg.id, utcnow())
    waiting = [entry for entry in inbox if entry.is_open]
    assert [(e.proposal_title, e.status) for e in waiting] == [(sent.title, ThreadStatus.SENT)]

    projects = queries.public_projects(session)
    assert [(p.title, p.registries, p.topic_id) for p in projects] == [
        (demo.ACTIVE_PROJECT.title, ["Swedish MS Registry"], None)
    ]

    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "Decision ledger intact" in verified.output

    sizes = _sizes(session)
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0, second.output
    assert second.output == first.output
    assert _sizes(session) == sizes


def test_the_active_project_answers_an_adopted_demo_topic(app, runner, session, catalogue):
    now = utcnow()
    with app.app_context():
        seed_demo(session, app.config, {}, now)  # the core's demo data only
    staff = session.scalar(sa.select(User).where(User.role == Role.STAFF))
    topic = session.scalar(sa.select(Topic).where(Topic.title == demo.PREFERRED_TOPIC))
    for status in (TopicStatus.SHORTLISTED, TopicStatus.ADOPTED):
        topic_services.change_status(session, staff, topic, status, now)
    session.commit()

    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    (project,) = queries.public_projects(session)
    assert (project.topic_id, project.topic_title) == (topic.id, demo.PREFERRED_TOPIC)
    session.refresh(topic)
    assert topic.proposal_reference.startswith(f"Project {project.proposal_id}:")


def test_seed_says_so_when_the_catalogue_is_empty(app, runner, session):
    app.instance_path = str(app.config["MAIL_OUTBOX_DIR"]) + "-instance"
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "Governance demo skipped: the variable catalogue has none" in result.output
    assert session.scalar(sa.select(sa.func.count()).select_from(Proposal)) == 0
