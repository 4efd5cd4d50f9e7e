"""The review-reminder job, run with an explicit ``now`` (emails through the file outbox)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage import delivery
from engage.accounts.models import Role, User
from engage.consent.jobs import send_review_reminders
from engage.consent.models import ConsentFormVersion, ConsentParticipant
from engage.consent.seed import FIRST_SCOPES
from engage.timeutil import utcnow
from tests.consent_support import NEW_SCOPE, decide, join, publish

DAY = timedelta(days=1)


@pytest.fixture
def setting(app, session, make_user):
    """Version 1 reviewed by three participants; version 2 (a new scope) published at T0."""
    staff = make_user(Role.STAFF)
    t0 = utcnow() - timedelta(days=100)
    publish(session, staff, now=t0 - 10 * DAY)
    people = {
        name: make_user(Role.PARTICIPANT, email=f"{name}@example.org")
        for name in ("late", "prompt", "deactivated")
    }
    for person in people.values():
        join(app, session, person, now=t0 - 5 * DAY)
    never_joined = make_user(Role.PARTICIPANT, email="never@example.org")
    second = publish(session, staff, [*FIRST_SCOPES, NEW_SCOPE], now=t0)
    session.get(User, people["deactivated"].id).is_active = False
    session.commit()
    return {"people": people, "never": never_joined, "t0": t0, "version": second}


REVIEW_SUBJECT = "Please review the updated consent form"


def run(app, session, now):
    """Run the job, deliver what it queued, and return the summary's review-reminder part."""
    with app.app_context():
        summary = send_review_reminders(session, now, app.config)
        session.commit()
    delivery.deliver(app, now=now)
    return "sent " + summary.split(", ")[-1].removeprefix("queued ")


def reminders_to(mailbox, address):
    return [m for m in mailbox.to(address) if m.subject == REVIEW_SUBJECT]


def test_reminders_wait_for_the_interval_and_stop_after_the_maximum(app, session, mailbox, setting):
    t0, people = setting["t0"], setting["people"]
    assert (app.config["CONSENT_REVIEW_REMINDER_DAYS"], app.config["CONSENT_MAX_REMINDERS"]) == (
        14,
        3,
    )
    assert run(app, session, t0 + 13 * DAY) == "sent 0 review reminder(s)"
    # The prompt participant reviews before the first reminder.
    decide(app, session, people["prompt"], {"BIOBANK_SAMPLES": False}, now=t0 + 2 * DAY)

    assert run(app, session, t0 + 14 * DAY) == "sent 1 review reminder(s)"
    assert [m.to for m in mailbox.messages if m.subject == REVIEW_SUBJECT] == ["late@example.org"]
    message = mailbox.last_to("late@example.org")
    assert message.subject == REVIEW_SUBJECT
    assert "version 2" in message.text
    assert message.link("/consent/review").startswith("http://engage.test/consent/review")

    assert run(app, session, t0 + 20 * DAY) == "sent 0 review reminder(s)"  # too soon again
    assert run(app, session, t0 + 28 * DAY) == "sent 1 review reminder(s)"
    assert run(app, session, t0 + 42 * DAY) == "sent 1 review reminder(s)"
    assert "This is reminder 3" in mailbox.last_to("late@example.org").text
    assert run(app, session, t0 + 80 * DAY) == "sent 0 review reminder(s)"  # at most 3
    assert len(reminders_to(mailbox, "late@example.org")) == 3
    # Never reminded: who reviewed, who is deactivated, who never took part.
    for address in ("prompt@example.org", "deactivated@example.org", "never@example.org"):
        assert reminders_to(mailbox, address) == []
    row = session.get(ConsentParticipant, people["late"].id)
    assert (row.reminder_count, row.reminded_version_id) == (3, setting["version"].id)


def test_reviewing_stops_reminders_and_a_new_version_starts_them_again(
    app, session, mailbox, setting
):
    t0, late = setting["t0"], setting["people"]["late"]
    assert run(app, session, t0 + 14 * DAY) == "sent 2 review reminder(s)"  # late and prompt
    decide(app, session, late, {"BIOBANK_SAMPLES": True}, now=t0 + 15 * DAY)
    assert run(app, session, t0 + 29 * DAY) == "sent 1 review reminder(s)"
    assert len(reminders_to(mailbox, "late@example.org")) == 1  # reviewed: no second reminder
    assert len(reminders_to(mailbox, "prompt@example.org")) == 2

    staff = session.scalar(sa.select(User).where(User.role == Role.STAFF))
    third = publish(session, staff, list(FIRST_SCOPES), now=t0 + 30 * DAY)
    assert run(app, session, t0 + 44 * DAY) == "sent 2 review reminder(s)"
    row = session.get(ConsentParticipant, late.id)
    assert (row.reminder_count, row.reminded_version_id) == (1, third.id)  # counted afresh
    assert session.get(ConsentFormVersion, third.id).number == 3


def test_the_job_is_registered_with_the_scheduler(app, runner):
    assert "consent.review_reminders" in runner.invoke(args=["scheduler", "list"]).output
    result = runner.invoke(args=["scheduler", "run-job", "consent.review_reminders"])
    assert result.exit_code == 0 and "no published consent form" in result.output


def test_participants_who_never_decided_hear_once_that_the_form_is_ready(
    app, session, mailbox, setting
):
    t0 = setting["t0"]
    with app.app_context():
        first = send_review_reminders(session, t0 + DAY, app.config)
        session.commit()
        second = send_review_reminders(session, t0 + 2 * DAY, app.config)
        session.commit()
    assert first.startswith("queued 1 consent-form notice(s)")
    assert second.startswith("queued 0 consent-form notice(s)")
    delivery.deliver(app, now=t0 + 2 * DAY)
    ready = mailbox.to("never@example.org")
    assert [m.subject for m in ready] == ["You can now give your consent"]
    assert "version 2" in ready[0].text
    assert ready[0].link("/consent").startswith("http://engage.test/consent")
    # Who already decided, and who is deactivated, are not told.
    for address in ("late@example.org", "prompt@example.org", "deactivated@example.org"):
        assert mailbox.to(address) == []

