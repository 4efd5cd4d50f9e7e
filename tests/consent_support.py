"""Helpers shared by the consent tests: publishing forms and recording decisions directly."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.consent import decisions, queries, versions
from engage.consent.models import ConsentEvent, ConsentFormVersion, ScopeKind
from engage.consent.receipts import ReceiptIssuer
from engage.consent.seed import FIRST_FORM, FIRST_SCOPES
from engage.timeutil import utcnow

REQUIRED = ("SHARE_RECORDS", "MS_RESEARCH")
OPTIONAL = (
    "OTHER_HEALTH_RESEARCH",
    "COMMERCIAL_RESEARCH",
    "GENOMIC_DATA",
    "IMAGING_DATA",
    "SURVEY_RECONTACT",
    "TRIAL_CONTACT",
)
ALL_CODES = REQUIRED + OPTIONAL
STATE_FIELD = re.compile(r'name="state"[^>]*\svalue="([^"]+)"')
VERSION_FIELD = re.compile(r'name="version_id"[^>]*\svalue="([^"]+)"')


def issuer(app: Flask) -> ReceiptIssuer:
    """The app's receipt issuer (the CLI verifies with the same key)."""
    return ReceiptIssuer.from_config(app.config)


def user(session: Session, someone: User) -> User:
    """``someone`` loaded in ``session``."""
    return session.get(User, someone.id)


def publish(
    session: Session,
    staff: User,
    scopes: list[versions.ScopeDetails] | None = None,
    *,
    now: datetime | None = None,
    details: versions.VersionDetails = FIRST_FORM,
    justification: str | None = None,
    max_grade: float = 8,
) -> ConsentFormVersion:
    """Draft a version with ``scopes`` (default: the seed form's) and publish it; commits."""
    now = now or utcnow()
    staff = user(session, staff)
    version = versions.create_draft(session, staff, details, now)
    existing = {scope.code: scope for scope in queries.scopes_of(session, version.id)}
    wanted = scopes if scopes is not None else FIRST_SCOPES
    for details_ in wanted:
        if details_.code in existing:
            versions.update_scope(session, staff, existing.pop(details_.code), details_, now)
        else:
            versions.add_scope(session, staff, version, details_, now)
    for leftover in existing.values():
        versions.remove_scope(session, staff, leftover, now)
    versions.publish_version(
        session, staff, version, justification=justification, now=now, max_grade=max_grade
    )
    session.commit()
    return version


def decide(
    app: Flask,
    session: Session,
    someone: User,
    allow: Mapping[str, bool],
    *,
    now: datetime | None = None,
    review: bool = False,
) -> decisions.ChangeOutcome:
    """Record ``someone``'s decisions on the current form (as on the dashboard); commits."""
    version = queries.current_version(session)
    outcome = decisions.record_decisions(
        session,
        user(session, someone),
        allow,
        version_id=version.id,
        state=queries.current_state(session, someone.id),
        now=now or utcnow(),
        issuer=issuer(app),
        review=review,
    )
    session.commit()
    return outcome


def join(app: Flask, session: Session, someone: User, *, now: datetime | None = None, **allow):
    """``someone`` reviews the whole form: required scopes allowed, optional ones as given."""
    choices = {code: True for code in REQUIRED} | {code: False for code in OPTIONAL}
    choices.update(allow)
    return decide(app, session, someone, choices, now=now, review=True)


def reworded(code: str, title: str | None = None) -> list[versions.ScopeDetails]:
    """The seed scopes with ``code``'s explanation reworded (a changed scope)."""
    scopes = []
    for details in FIRST_SCOPES:
        if details.code == code:
            details = versions.ScopeDetails(
                code=details.code,
                title=title or details.title,
                explanation=details.explanation + " This now includes data from wearables.",
                kind=details.kind,
                duo_code=details.duo_code,
                is_required=details.is_required,
            )
        scopes.append(details)
    return scopes


NEW_SCOPE = versions.ScopeDetails(
    code="BIOBANK_SAMPLES",
    title="Use my stored blood samples",
    explanation="Samples your clinic stores may be tested in approved projects.",
    kind=ScopeKind.DATA_CATEGORY,
)


def events_of(session: Session, someone: User) -> list[ConsentEvent]:
    """``someone``'s ledger, oldest first."""
    session.expire_all()
    return list(
        session.scalars(
            sa.select(ConsentEvent)
            .where(ConsentEvent.user_id == someone.id)
            .order_by(ConsentEvent.seq)
        )
    )


def ledger_size(session: Session) -> int:
    """How many consent events there are in all."""
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) or 0


def later(days: float = 0, **kwargs: float) -> datetime:
    """A time ``days`` from now."""
    return utcnow() + timedelta(days=days, **kwargs)
