"""Demonstration data: the Big MS Data network's registries and one account per role."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from engage.accounts import services as account_services
from engage.accounts.models import CustodianStatus, Role, User
from engage.consent.receipts import ReceiptIssuer
from engage.consent.seed import ensure_demo_choices, ensure_first_form
from engage.registries.services import RegistryDetails, ensure_registry
from engage.topics import services as topic_services
from engage.topics.models import Topic, TopicCategory, TopicStatus

REGISTRIES = [
    RegistryDetails(code="REMUS", name="Czech National MS Registry (ReMuS)", country="CZ"),
    RegistryDetails(code="DMSR", name="Danish Multiple Sclerosis Registry", country="DK"),
    RegistryDetails(code="OFSEP", name="French MS Registry (OFSEP)", country="FR"),
    RegistryDetails(code="IMSR", name="Italian MS and Related Disorders Register", country="IT"),
    RegistryDetails(code="SMSREG", name="Swedish MS Registry", country="SE"),
    RegistryDetails(code="MSBASE", name="MSBase", country="INT"),
]

DEMO_ACCOUNTS = [
    # (role, email, display name, country)
    (Role.PARTICIPANT, "participant@demo.engage.localhost", "Alex (demo participant)", "SE"),
    (Role.CLINICIAN, "clinician@demo.engage.localhost", "Dr Berg (demo clinician)", "DK"),
    (Role.CUSTODIAN, "custodian@demo.engage.localhost", "Chris (demo custodian)", "SE"),
    (Role.ORGANISATION, "organisation@demo.engage.localhost", "Dana (demo MS society)", "IT"),
    (Role.STAFF, "staff@demo.engage.localhost", "Eli (demo staff)", "BE"),
]


class DemoRefused(RuntimeError):
    """Demo data must never reach a production database."""


# A package's demo data: (session, config, now) -> one line saying what it holds. It runs after
# the core's (registries, demo accounts, topics, the consent form), never commits, and changes
# nothing when its data is already there.
DemoSeeder = Callable[[Session, Mapping[str, Any], datetime], str]


@dataclass
class DemoSeeders:
    """The packages' demo seeders, in registration order (bound at composition time)."""

    seeders: list[DemoSeeder] = field(default_factory=list)

    def register(self, seeder: DemoSeeder) -> None:
        """Run ``seeder`` after the core's demo data (and after those registered before it)."""
        self.seeders.append(seeder)

    def __iter__(self) -> Iterator[DemoSeeder]:
        return iter(self.seeders)


def init_app(app: Flask, seeders: DemoSeeders) -> None:
    """Bind the registered demo seeders to ``app``."""
    app.extensions["engage.demo_seeders"] = seeders


def demo_seeders(app: Flask) -> DemoSeeders:
    """The app's registered demo seeders (none when the composition root bound none)."""
    return app.extensions.get("engage.demo_seeders") or DemoSeeders()


DEMO_TOPICS = [
    # (title, question, why it matters, category, author email)
    (
        "Does vitamin D slow MS progression?",
        "Does daily vitamin D supplementation slow disability progression in relapsing MS?",
        "Many of us take vitamin D *without knowing* whether it helps, or how much to take.",
        TopicCategory.LIFESTYLE,
        "participant@demo.engage.localhost",
    ),
    (
        "Which exercise helps MS fatigue the most?",
        "Which kinds of exercise reduce fatigue for people with progressive MS?",
        "Fatigue is the symptom people with MS name most often, and advice differs a lot.",
        TopicCategory.SYMPTOMS,
        "organisation@demo.engage.localhost",
    ),
    (
        "When is it safe to stop a disease-modifying therapy?",
        "Can people over 55 with stable MS safely stop their disease-modifying therapy?",
        "Stopping could spare side effects and costs, but nobody wants a relapse.",
        TopicCategory.TREATMENTS,
        "clinician@demo.engage.localhost",
    ),
]


def _seed_topics(session: Session, now: datetime) -> None:
    """Three published demo topics, each supported by its author (once)."""
    if session.scalar(sa.select(sa.func.count()).select_from(Topic)):
        return
    staff = session.scalar(sa.select(User).where(User.role == Role.STAFF).order_by(User.id))
    for title, question, rationale, category, email in DEMO_TOPICS:
        author = session.scalar(sa.select(User).where(User.email == email))
        topic = topic_services.propose_topic(
            session,
            author,
            topic_services.TopicDetails(title, question, rationale, category),
            now,
            max_pending=len(DEMO_TOPICS),
        )
        topic_services.change_status(session, staff, topic, TopicStatus.PUBLISHED, now)
        topic_services.support_topic(session, author, topic.id, now)


def credentials_file(app: Flask) -> Path:
    """Where the demo passwords are kept (development only, readable by the owner only)."""
    return Path(app.instance_path) / "demo-sign-ins.json"


def check_allowed(config: Mapping[str, Any]) -> None:
    """Refuse demo data under the production configuration."""
    if config["ENGAGE_CONFIG"] == "production":
        raise DemoRefused("Refusing to seed demo data under the production configuration.")


def seed_demo(
    session: Session,
    config: Mapping[str, Any],
    known: dict[str, str],
    now: datetime,
    seeders: Iterable[DemoSeeder] = (),
) -> list[str]:
    """Create registries, demo accounts, topics and the first consent form where missing,
    then run the packages' ``seeders`` (the caller commits); return lines describing the
    sign-ins, then one line per seeder.

    :param known: demo passwords by address from earlier runs; new accounts' generated
        passwords are added to it, for the caller to keep.
    :param seeders: the packages' demo data (see :class:`DemoSeeders`), run in order.
    """
    check_allowed(config)
    lines: list[str] = []
    registries = {details.code: ensure_registry(session, details, now) for details in REGISTRIES}
    for role, email, name, country in DEMO_ACCOUNTS:
        user = session.scalar(sa.select(User).where(User.email == email))
        if user is None:
            password = f"demo-{secrets.token_urlsafe(9)}"
            user = account_services.create_user_by_cli(
                session,
                email=email,
                password=password,
                role=role,
                display_name=name,
                country=country,
                language="en",
                now=now,
            )
            if role == Role.CLINICIAN:
                user.profession, user.institution = "Neurologist", "Rigshospitalet"
                user.clinician_verified_at = now
            elif role == Role.ORGANISATION:
                user.organisation_name = "Associazione Italiana Sclerosi Multipla"
            elif role == Role.CUSTODIAN:
                user.custodian_registry_id = registries["SMSREG"].id
                user.custodian_status = CustodianStatus.APPROVED
            known[email] = password
        lines.append(f"  {role.value:<13} {email:<38} {known.get(email, '(password set earlier)')}")
    session.flush()
    _seed_topics(session, now)
    _seed_consent(session, config, now)
    extra = [seeder(session, config, now) for seeder in seeders]
    header = [
        f"Demo data ready: {len(REGISTRIES)} registries, {len(DEMO_ACCOUNTS)} demo accounts, "
        f"{len(DEMO_TOPICS)} research topics, the first consent form.",
        "Demo sign-ins (role, email, password):",
    ]
    return header + lines + extra


def _seed_consent(session: Session, config: Mapping[str, Any], now: datetime) -> None:
    """The network's first consent form, published, and the demo participant's first choices."""
    by_role = {role: email for role, email, _name, _country in DEMO_ACCOUNTS}
    staff = session.scalar(sa.select(User).where(User.email == by_role[Role.STAFF]))
    participant = session.scalar(sa.select(User).where(User.email == by_role[Role.PARTICIPANT]))
    ensure_first_form(session, staff, now, config["CONSENT_MAX_READING_GRADE"])
    ensure_demo_choices(session, participant, now, ReceiptIssuer.from_config(config))
