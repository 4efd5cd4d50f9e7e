"""The audit log takes any package's actions; ``engage audit verify`` runs every ledger."""

from __future__ import annotations

import enum

import pytest
import sqlalchemy as sa

from engage import audit, hashchain
from engage.app import create_app
from engage.audit import AuditEvent
from engage.db import Database
from engage.timeutil import utcnow


class ProposalAction(enum.StrEnum):
    """An action enum of another package (as governance will have)."""

    SENT_TO_REGISTRIES = "proposal_sent_to_registries"
    TOO_LONG = "x" * 41


def test_record_takes_another_packages_action_enum(session, make_user):
    staff = make_user()
    audit.record(session, ProposalAction.SENT_TO_REGISTRIES, now=utcnow(), actor_id=staff.id)
    session.commit()
    recorded = session.scalars(
        sa.select(AuditEvent.action).where(AuditEvent.actor_id == staff.id)
    ).all()
    assert recorded == ["proposal_sent_to_registries"]
    with pytest.raises(ValueError, match="longer than 40"):
        audit.record(session, ProposalAction.TOO_LONG, now=utcnow())


def test_audit_verify_runs_every_registered_ledger_and_fails_on_any_problem(app):
    other = create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": app.config["DATABASE_URL"]})
    try:
        hashchain.ledgers(other).register(
            "decisions",
            lambda session: hashchain.LedgerReport(
                checked=2, problems=["decision event 7: chain broken"]
            ),
        )
        result = other.test_cli_runner().invoke(args=["audit", "verify"])
    finally:
        Database.engine(other).dispose()
    assert result.exit_code == 1
    assert "Consent ledger intact: 0 event(s) checked" in result.output
    assert "decision event 7: chain broken" in result.output
    assert "1 problem(s) in the decisions ledger (2 event(s) checked)" in result.output
