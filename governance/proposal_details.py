"""A proposal's details: what the proposer writes, the rules those details follow (checked
before anything is written), and writing them with the scopes and variables they name.

:mod:`governance.proposals` drafts and edits proposals through these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.consent.queries import current_scopes
from engage.topics.models import Topic, TopicStatus
from governance.errors import InvalidProposal
from governance.models import (
    AnalysisMode,
    CatalogueVariable,
    Proposal,
    ProposalScope,
    ProposalVariable,
)

# Registries need time to review: a deadline closer than this is refused.
MIN_DECISION_TIME = timedelta(days=1)
# Column sizes, and generous caps on the Markdown summaries (a page, and a few pages).
TEXT_LIMITS = {
    "title": 200,
    "lead_researcher": 200,
    "institution": 200,
    "sponsor": 200,
    "plain_summary": 5000,
    "scientific_summary": 20000,
    "ethics_reference": 120,
}
FIELD_NAMES = {
    "title": "title",
    "lead_researcher": "lead researcher",
    "institution": "institution",
    "sponsor": "sponsor",
    "plain_summary": "plain-language summary",
    "scientific_summary": "scientific summary",
    "ethics_reference": "ethics approval reference",
}
# ISO 639-1: two lower-case letters.
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")


@dataclass
class ProposalDetails:
    """What the proposer writes."""

    title: str
    lead_researcher: str
    institution: str
    sponsor: str
    plain_summary: str
    scientific_summary: str
    # ISO 639-1 code of the plain-language summary.
    language: str
    analysis_mode: AnalysisMode
    ethics_reference: str
    # An adopted research topic the project answers, if any.
    topic_id: int | None
    decision_deadline: datetime
    # Codes of the published consent form's scopes the project needs.
    scope_codes: list[str] = field(default_factory=list)
    # Ids of the catalogue variables it requests.
    variable_ids: list[int] = field(default_factory=list)


# Checking and writing -------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckedDetails:
    """Details that passed every check, trimmed and normalised."""

    texts: dict[str, str]
    language: str
    analysis_mode: AnalysisMode
    topic_id: int | None
    decision_deadline: datetime
    scope_codes: tuple[str, ...]
    variable_ids: tuple[int, ...]


def _check_texts(details: ProposalDetails) -> dict[str, str]:
    texts = {}
    for name, limit in TEXT_LIMITS.items():
        value = (getattr(details, name) or "").strip()
        if not value:
            raise InvalidProposal(f"Write the {FIELD_NAMES[name]}.")
        if len(value) > limit:
            raise InvalidProposal(
                f"The {FIELD_NAMES[name]} is too long: use at most {limit} characters."
            )
        texts[name] = value
    return texts


def _check_deadline(deadline: datetime, now: datetime) -> datetime:
    if deadline.tzinfo is None:
        raise InvalidProposal("Give the decision deadline with its time zone.")
    if deadline < now + MIN_DECISION_TIME:
        raise InvalidProposal(
            "Give the registries at least a day to decide: choose a later decision deadline."
        )
    return deadline


def _check_scopes(session: Session, codes: list[str]) -> tuple[str, ...]:
    published = {scope.code for scope in current_scopes(session)}
    if not published:
        raise InvalidProposal(
            "No consent form is published yet, so no project can say which consent it needs."
        )
    wanted = tuple(dict.fromkeys(code.strip() for code in codes if code and code.strip()))
    if not wanted:
        raise InvalidProposal("Choose at least one consent scope the project needs.")
    unknown = [code for code in wanted if code not in published]
    if unknown:
        raise InvalidProposal(
            f"The published consent form has no scope {', '.join(unknown)}; "
            "choose among its scopes."
        )
    return wanted


def _check_variables(session: Session, variable_ids: list[int]) -> tuple[int, ...]:
    wanted = tuple(dict.fromkeys(variable_ids))
    if not wanted:
        raise InvalidProposal("Choose at least one variable the project requests.")
    found = {
        variable.id: variable
        for variable in session.scalars(
            sa.select(CatalogueVariable).where(CatalogueVariable.id.in_(wanted))
        )
    }
    if len(found) != len(wanted):
        raise InvalidProposal("One of the chosen variables is not in the catalogue.")
    retired = sorted(variable.code for variable in found.values() if not variable.is_active)
    if retired:
        raise InvalidProposal(
            f"{', '.join(retired)} {'is' if len(retired) == 1 else 'are'} retired from the "
            "catalogue and can no longer be requested."
        )
    return wanted


def _check_topic(session: Session, topic_id: int | None) -> int | None:
    if topic_id is None:
        return None
    topic = session.get(Topic, topic_id)
    if topic is None:
        raise InvalidProposal("The chosen research topic does not exist.")
    if topic.status != TopicStatus.ADOPTED:
        raise InvalidProposal(
            f"Only a topic adopted for research can be linked; “{topic.title}” is "
            f"“{topic.status.label.lower()}”."
        )
    return topic.id


def check_details(session: Session, details: ProposalDetails, now: datetime) -> CheckedDetails:
    """``details`` checked against every rule a draft follows, before anything is written.

    :raises InvalidProposal: naming the first rule broken.
    """
    texts = _check_texts(details)
    language = (details.language or "").strip().lower()
    if not LANGUAGE_PATTERN.match(language):
        raise InvalidProposal("Give the summary's language as a two-letter code, e.g. “en”.")
    if not isinstance(details.analysis_mode, AnalysisMode):
        raise InvalidProposal("Choose pooled or federated analysis.")
    return CheckedDetails(
        texts=texts,
        language=language,
        analysis_mode=details.analysis_mode,
        topic_id=_check_topic(session, details.topic_id),
        decision_deadline=_check_deadline(details.decision_deadline, now),
        scope_codes=_check_scopes(session, details.scope_codes),
        variable_ids=_check_variables(session, details.variable_ids),
    )


def apply_details(
    session: Session, proposal: Proposal, checked: CheckedDetails, now: datetime
) -> None:
    """Write ``checked`` onto ``proposal`` (flushed), replacing its scopes and variables."""
    for name, value in checked.texts.items():
        setattr(proposal, name, value)
    proposal.language = checked.language
    proposal.analysis_mode = checked.analysis_mode
    proposal.topic_id = checked.topic_id
    proposal.decision_deadline = checked.decision_deadline
    proposal.updated_at = now
    session.flush()  # a new proposal needs its id for the rows below
    had_scopes = set(scope_codes(session, proposal))
    session.execute(
        sa.delete(ProposalScope).where(
            ProposalScope.proposal_id == proposal.id,
            ProposalScope.scope_code.not_in(checked.scope_codes),
        )
    )
    session.add_all(
        ProposalScope(proposal_id=proposal.id, scope_code=code)
        for code in checked.scope_codes
        if code not in had_scopes
    )
    had_variables = set(variable_ids(session, proposal))
    session.execute(
        sa.delete(ProposalVariable).where(
            ProposalVariable.proposal_id == proposal.id,
            ProposalVariable.variable_id.not_in(checked.variable_ids),
        )
    )
    session.add_all(
        ProposalVariable(proposal_id=proposal.id, variable_id=variable_id)
        for variable_id in checked.variable_ids
        if variable_id not in had_variables
    )
    session.flush()


def scope_codes(session: Session, proposal: Proposal) -> list[str]:
    """The consent scope codes ``proposal`` needs, in code order."""
    return list(
        session.scalars(
            sa.select(ProposalScope.scope_code)
            .where(ProposalScope.proposal_id == proposal.id)
            .order_by(ProposalScope.scope_code)
        )
    )


def variable_ids(session: Session, proposal: Proposal) -> list[int]:
    """The ids of the catalogue variables ``proposal`` requests, in id order."""
    return list(
        session.scalars(
            sa.select(ProposalVariable.variable_id)
            .where(ProposalVariable.proposal_id == proposal.id)
            .order_by(ProposalVariable.variable_id)
        )
    )


def details_of(session: Session, proposal: Proposal) -> ProposalDetails:
    """``proposal``'s details as the proposer wrote them (to fill the edit form)."""
    return ProposalDetails(
        title=proposal.title,
        lead_researcher=proposal.lead_researcher,
        institution=proposal.institution,
        sponsor=proposal.sponsor,
        plain_summary=proposal.plain_summary,
        scientific_summary=proposal.scientific_summary,
        language=proposal.language,
        analysis_mode=proposal.analysis_mode,
        ethics_reference=proposal.ethics_reference,
        topic_id=proposal.topic_id,
        decision_deadline=proposal.decision_deadline,
        scope_codes=scope_codes(session, proposal),
        variable_ids=variable_ids(session, proposal),
    )
