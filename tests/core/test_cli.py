"""The ``engage`` command: staff accounts, demo data, jobs."""

from __future__ import annotations

import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role, User
from engage.audit import AuditEvent
from engage.consent import queries as consent_queries
from engage.consent.models import ConsentEvent, ConsentFormVersion, VersionStatus
from engage.registries.models import Registry
from engage.topics.models import Topic, TopicSupport
from tests.conftest import sign_in


def test_users_create_staff_reads_the_password_from_stdin(app, runner, session, client):
    result = runner.invoke(
        args=[
            "users",
            "create",
            "--role",
            "staff",
            "--email",
            "Lead@Centre.example",
            "--password-stdin",
        ],
        input="a good long staff passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created staff account lead@centre.example" in result.output
    assert "a good long staff passphrase" not in result.output
    user = session.scalar(sa.select(User).where(User.email == "lead@centre.example"))
    assert user.role == Role.STAFF and user.email_verified_at is not None
    sign_in(client, user, password="a good long staff passphrase")
    assert client.get("/staff/users").status_code == 200
    actions = session.scalars(
        sa.select(AuditEvent.action)
        .where(AuditEvent.subject_user_id == user.id)
        .order_by(AuditEvent.id)
    )
    # Staff set up two-step sign-in at their first sign-in, before they are signed in.
    assert list(actions) == [
        "account_created_by_cli",
        "two_factor_enabled",
        "recovery_codes_created",
        "sign_in",
    ]


def test_users_create_prompts_twice_and_refuses_a_mismatch(runner, session):
    result = runner.invoke(
        args=["users", "create", "--role", "staff", "--email", "s@centre.example"],
        input="first long passphrase\nsecond long passphrase\n"
        "first long passphrase\nfirst long passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "Repeat the password" in result.output
    assert "The two entered values do not match." in result.output
    assert session.scalar(sa.select(User).where(User.email == "s@centre.example")) is not None


def test_users_create_refuses_weak_password_duplicates_and_custodian(runner, make_user):
    weak = runner.invoke(
        args=[
            "users",
            "create",
            "--role",
            "staff",
            "--email",
            "w@centre.example",
            "--password-stdin",
        ],
        input="password123\n",
    )
    assert weak.exit_code != 0 and "too common" in weak.output
    existing = make_user(Role.STAFF)
    dup = runner.invoke(
        args=["users", "create", "--role", "staff", "--email", existing.email, "--password-stdin"],
        input="a good long staff passphrase\n",
    )
    assert dup.exit_code != 0 and "already exists" in dup.output
    custodian = runner.invoke(
        args=[
            "users",
            "create",
            "--role",
            "custodian",
            "--email",
            "c@x.example",
            "--password-stdin",
        ],
        input="a good long staff passphrase\n",
    )
    assert custodian.exit_code != 0 and "Invalid value for '--role'" in custodian.output


def test_users_create_takes_no_password_argument(runner):
    result = runner.invoke(
        args=[
            "users",
            "create",
            "--role",
            "staff",
            "--email",
            "p@x.example",
            "--password",
            "a good long staff passphrase",
        ],
    )
    assert result.exit_code != 0 and "No such option '--password'" in result.output


def test_demo_seed_is_idempotent(app, runner, session):
    app.instance_path = str(app.config["MAIL_OUTBOX_DIR"]) + "-instance"
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Registry)) == 6
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 5
    assert session.scalar(sa.select(sa.func.count()).select_from(Topic)) == 3
    assert session.scalar(sa.select(sa.func.count()).select_from(TopicSupport)) == 3
    # One published consent form; the demo participant's first choices, recorded once.
    versions = list(session.scalars(sa.select(ConsentFormVersion)))
    assert [(v.number, v.status) for v in versions] == [(1, VersionStatus.PUBLISHED)]
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 8
    demo_participant = session.scalar(sa.select(User).where(User.role == Role.PARTICIPANT))
    assert consent_queries.permits(session, demo_participant.id, ["GENOMIC_DATA"])
    assert not consent_queries.permits(session, demo_participant.id, ["COMMERCIAL_RESEARCH"])
    countries = set(session.scalars(sa.select(Registry.country)))
    assert countries == {"CZ", "DK", "FR", "IT", "SE", "INT"}
    # Each run prints the same sign-ins, and the printed password works.
    assert first.output == second.output
    line = next(x for x in first.output.splitlines() if x.strip().startswith("custodian"))
    _, email, password = line.split()
    custodian = session.scalar(sa.select(User).where(User.email == email))
    assert custodian.custodian_status == CustodianStatus.APPROVED
    client = app.test_client()
    sign_in(client, custodian, password=password)


def test_demo_seed_refuses_production(app, runner, session):
    app.config["ENGAGE_CONFIG"] = "production"
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code != 0
    assert "Refusing to seed demo data" in result.output
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_scheduler_list_and_run_job(runner, make_user):
    listing = runner.invoke(args=["scheduler", "list"])
    assert "accounts.remove_unverified" in listing.output
    result = runner.invoke(args=["scheduler", "run-job", "accounts.remove_unverified"])
    assert result.exit_code == 0 and "removed 0 unverified account(s)" in result.output
    unknown = runner.invoke(args=["scheduler", "run-job", "nope"])
    assert unknown.exit_code != 0 and "No job named 'nope'" in unknown.output
