"""Governance's demo data, run by ``engage demo seed`` after the core's (the composition root
registers :func:`seed`): one proposal out for decisions at three registries, waiting in the
demo custodian's inbox, and one project already active in the public register.

Everything goes through the governance services, so the decision ledger is what real use
would have written; a proposal whose title is already there is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.accounts.models import Role, User
from engage.demo import DEMO_ACCOUNTS, DEMO_TOPICS
from engage.registries.models import Registry
from governance import decisions, proposals, queries
from governance.jobs import SETTLED_REASONS
from governance.models import (
    AnalysisMode,
    CatalogueVariable,
    DecisionThread,
    Proposal,
    ProposalStatus,
)
from governance.rules import APPROVING_THREAD_STATUSES

# The registry the demo custodian acts for (see engage.demo), and the others asked alongside it.
CUSTODIAN_REGISTRY = "SMSREG"
OTHER_REGISTRIES = ("DMSR", "OFSEP")
DECISION_DAYS = 21
# The active project's story, in days before the seed: drafted, sent, approved, closed.
ACTIVE_STORY_DAYS = (60, 58, 50, 45)
# The demo topic the active project answers, if staff have adopted it (else any adopted one).
PREFERRED_TOPIC = "When is it safe to stop a disease-modifying therapy?"


@dataclass(frozen=True)
class DemoProposal:
    """What a demo proposal says (its deadline is set when it is drafted)."""

    title: str
    lead_researcher: str
    institution: str
    sponsor: str
    plain_summary: str
    scientific_summary: str
    analysis_mode: AnalysisMode
    ethics_reference: str
    scope_codes: tuple[str, ...]
    variable_codes: tuple[str, ...]


OUT_FOR_DECISIONS = DemoProposal(
    title="Disease-modifying therapy and COVID-19 outcomes",
    lead_researcher="Dr Maria Lund",
    institution="Karolinska Institutet",
    sponsor="Big MS Data Network",
    plain_summary=(
        "Some MS medicines calm the immune system. We want to know if people who take them "
        "get more ill from COVID-19. We will count hospital stays and compare medicines."
    ),
    scientific_summary=(
        "A federated cohort study of COVID-19 severity (hospitalisation, intensive care, death) "
        "by disease-modifying therapy at infection, adjusted for age, sex, EDSS and MS course."
    ),
    analysis_mode=AnalysisMode.FEDERATED,
    ethics_reference="EPN 2027-00412",
    scope_codes=("SHARE_RECORDS", "MS_RESEARCH"),
    variable_codes=("SEX", "BIRTH_YEAR", "MS_COURSE", "EDSS", "DMT_EXPOSURE", "ADVERSE_EVENTS"),
)
ACTIVE_PROJECT = DemoProposal(
    title="Stopping disease-modifying therapy in stable MS after 55",
    lead_researcher="Dr Jonas Berg",
    institution="Rigshospitalet",
    sponsor="Danish MS Society",
    plain_summary=(
        "Many older people with stable MS wonder if they can stop their MS medicine. We will "
        "look at what happened to people who stopped and to people who did not."
    ),
    scientific_summary=(
        "A pooled observational study of relapses, EDSS progression and new MRI activity after "
        "discontinuing disease-modifying therapy in people over 55 without recent activity."
    ),
    analysis_mode=AnalysisMode.POOLED,
    ethics_reference="H-2026-118",
    scope_codes=("SHARE_RECORDS", "MS_RESEARCH"),
    variable_codes=("BIRTH_YEAR", "DMT_EXPOSURE", "RELAPSES", "EDSS", "MRI"),
)


def _demo_user(session: Session, role: Role) -> User | None:
    email = next(email for r, email, _name, _country in DEMO_ACCOUNTS if r == role)
    user_id = account_queries.user_id_by_email(session, email)
    return session.get(User, user_id) if user_id is not None else None


def _proposal_titled(session: Session, title: str) -> Proposal | None:
    return session.scalars(
        sa.select(Proposal).where(Proposal.title == title).order_by(Proposal.id)
    ).first()


def _variable_ids(session: Session, codes: tuple[str, ...]) -> list[int]:
    """The catalogue's active variables among ``codes`` (the migration seeds them)."""
    return list(
        session.scalars(
            sa.select(CatalogueVariable.id)
            .where(CatalogueVariable.code.in_(codes), CatalogueVariable.is_active)
            .order_by(CatalogueVariable.id)
        )
    )


def _adopted_demo_topic(session: Session) -> int | None:
    """An adopted demo topic for the active project to answer, or None when none is adopted."""
    demo_titles = {title for title, *_rest in DEMO_TOPICS}
    adopted = {title: topic_id for topic_id, title in queries.adopted_topics(session)}
    if PREFERRED_TOPIC in adopted:
        return adopted[PREFERRED_TOPIC]
    return next((topic_id for title, topic_id in adopted.items() if title in demo_titles), None)


def _draft_and_screen(
    session: Session,
    staff: User,
    story: DemoProposal,
    topic_id: int | None,
    drafted_at: datetime,
) -> Proposal:
    """Staff draft ``story`` as its proposer, submit it and take it into screening."""
    details = proposals.ProposalDetails(
        title=story.title,
        lead_researcher=story.lead_researcher,
        institution=story.institution,
        sponsor=story.sponsor,
        plain_summary=story.plain_summary,
        scientific_summary=story.scientific_summary,
        language="en",
        analysis_mode=story.analysis_mode,
        ethics_reference=story.ethics_reference,
        topic_id=topic_id,
        decision_deadline=(drafted_at + timedelta(days=DECISION_DAYS)).replace(
            minute=0, second=0, microsecond=0
        ),
        scope_codes=list(story.scope_codes),
        variable_ids=_variable_ids(session, story.variable_codes),
    )
    proposal = proposals.create_draft(session, staff, details, drafted_at)
    proposals.submit(session, staff, proposal, drafted_at)
    proposals.start_screening(session, staff, proposal, drafted_at)
    return proposal


def _seed_out_for_decisions(
    session: Session, staff: User, registry_ids: list[int], now: datetime
) -> None:
    proposal = _draft_and_screen(session, staff, OUT_FOR_DECISIONS, None, now)
    proposals.send_to_registries(session, staff, proposal, registry_ids, now)


def _seed_active_project(
    session: Session, staff: User, custodian: User, registry_id: int, now: datetime
) -> None:
    """Told as it happened, weeks ago: sent to the custodian's registry only, approved there,
    then decisions closed into an active project (as the deadlines job would)."""
    drafted, sent, approved, closed = (now - timedelta(days=days) for days in ACTIVE_STORY_DAYS)
    proposal = _draft_and_screen(
        session, staff, ACTIVE_PROJECT, _adopted_demo_topic(session), drafted
    )
    (thread,) = proposals.send_to_registries(session, staff, proposal, [registry_id], sent)
    decisions.open_for_review(session, custodian, thread, approved)
    decisions.approve(session, custodian, thread, approved)
    for status in (ProposalStatus.DECISIONS_CLOSED, ProposalStatus.ACTIVE):
        proposals.set_status(session, None, proposal, status, closed, SETTLED_REASONS[status])


def _describe(session: Session, proposal: Proposal) -> str:
    """Where ``proposal`` stands, e.g. "sent to DMSR, OFSEP, SMSREG (decide by ...)"."""
    threads = session.execute(
        sa.select(DecisionThread.status, Registry.code)
        .join(Registry, Registry.id == DecisionThread.registry_id)
        .where(DecisionThread.proposal_id == proposal.id)
        .order_by(Registry.code)
    ).all()
    if proposal.status == ProposalStatus.SENT:
        sent_to = ", ".join(row.code for row in threads)
        return f"is sent to {sent_to} (decide by {proposal.decision_deadline:%Y-%m-%d %H:%M} UTC)"
    approving = [row.code for row in threads if row.status in APPROVING_THREAD_STATUSES]
    if proposal.status == ProposalStatus.ACTIVE and approving:
        return f"is an active project (approved by {', '.join(approving)})"
    return f"is “{proposal.status.label.lower()}”"


def seed(session: Session, config: Mapping[str, Any], now: datetime) -> str:
    """Create the governance demo proposals where missing (the caller commits); return a line
    saying what the demo holds. Needs the core's demo data (staff, custodian, registries, the
    published consent form)."""
    staff = _demo_user(session, Role.STAFF)
    custodian = _demo_user(session, Role.CUSTODIAN)
    registries = {
        code: queries.registry_by_code(session, code)
        for code in (CUSTODIAN_REGISTRY, *OTHER_REGISTRIES)
    }
    missing = [code for code, registry in registries.items() if registry is None]
    if staff is None or custodian is None or missing:
        return "Governance demo skipped: the core demo accounts or registries are missing."
    stories = (OUT_FOR_DECISIONS, ACTIVE_PROJECT)
    if not all(_variable_ids(session, story.variable_codes) for story in stories):
        # The migration seeds the core catalogue; a database emptied since has none.
        return "Governance demo skipped: the variable catalogue has none of the demo's variables."
    if _proposal_titled(session, ACTIVE_PROJECT.title) is None:
        _seed_active_project(session, staff, custodian, registries[CUSTODIAN_REGISTRY].id, now)
    if _proposal_titled(session, OUT_FOR_DECISIONS.title) is None:
        _seed_out_for_decisions(
            session, staff, [registry.id for registry in registries.values()], now
        )
    session.flush()
    parts = [
        f"“{story.title}” {_describe(session, _proposal_titled(session, story.title))}"
        for story in stories
    ]
    return f"Governance demo: {'; '.join(parts)}."
