"""Names people choose (finding 8): line breaks, control and invisible formatting characters are
refused with a clear field error wherever a name comes in (sign-up, profile, the command line,
newsletter sign-up), spaces are tidied, and email headers stay whole even for names stored
before these checks."""

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from markupsafe import escape

from engage import mail
from engage.accounts import services
from engage.accounts.models import Role, User
from engage.names import NAME_PROBLEM
from engage.timeutil import utcnow
from newsletters import lists as newsletter_lists
from newsletters.models import Subscriber
from tests.conftest import post_form, sign_in
from tests.newsletters.support import make_list

PASSPHRASE = "a long enough passphrase"
SHOWN_PROBLEM = str(escape(NAME_PROBLEM))
REFUSED = {
    "CR LF and a header": "Eve\r\nBcc: victim@example.org",
    "line feed": "Eve\nAdams",
    "tab": "Eve\tAdams",
    "escape sequence": "Eve\x1b[31m",
    "right-to-left override": "Eve \u202etxt.exe",
    "zero-width space": "Ev\u200be",
    "byte order mark": "\ufeffEve",
    "line separator": "Eve\u2028Adams",
    "paragraph separator": "Eve\u2029Adams",
    "private use": "Eve \ue000",
    "joiner alone at the start": "\u200dEve",
    "joiner between spaces": "Eve \u200d Adams",
}
KEPT = {
    "emoji with a joiner": "👩🏽\u200d⚕️ Dr S",
    "Persian with a non-joiner": "می\u200cخواهم",
    "Hebrew": "שלום עולם",
    "accents and apostrophe": "Zoë O'Brien-Łukasz",
}


def _sign_up(client, name: str):
    return post_form(
        client,
        "/sign-up",
        {
            "role": "participant",
            "display_name": name,
            "email": "named@example.org",
            "password": PASSPHRASE,
            "password_confirm": PASSPHRASE,
            "country": "SE",
            "language": "en",
        },
    )


def _account(session, email: str = "named@example.org") -> User | None:
    session.expire_all()
    return session.scalar(sa.select(User).where(User.email == email))


# Sign-up and profile ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", REFUSED.values(), ids=REFUSED.keys())
def test_sign_up_refuses_names_with_control_or_invisible_characters(client, session, name):
    response = _sign_up(client, name)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="display_name-error"' in page and SHOWN_PROBLEM in page
    assert _account(session) is None


@pytest.mark.parametrize("name", KEPT.values(), ids=KEPT.keys())
def test_sign_up_keeps_real_names_exactly(client, session, name):
    assert _sign_up(client, name).status_code == 302
    assert _account(session).display_name == name


def test_sign_up_trims_and_collapses_spaces(client, session):
    assert _sign_up(client, "  Ann \u00a0  Lee\u3000 ").status_code == 302
    assert _account(session).display_name == "Ann Lee"


@pytest.mark.parametrize("name", REFUSED.values(), ids=REFUSED.keys())
def test_profile_refuses_names_with_control_or_invisible_characters(client, session, as_role, name):
    user = as_role(Role.PARTICIPANT, display_name="Before")
    response = post_form(
        client, "/account", {"display_name": name, "country": "SE", "language": "en"}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="display_name-error"' in page and SHOWN_PROBLEM in page
    assert _account(session, user.email).display_name == "Before"


def test_profile_trims_and_collapses_spaces(client, session, as_role):
    user = as_role(Role.PARTICIPANT)
    response = post_form(
        client, "/account", {"display_name": " Ann    Lee ", "country": "SE", "language": "en"}
    )
    assert response.status_code == 302
    assert _account(session, user.email).display_name == "Ann Lee"


def test_the_services_refuse_bad_names_too(session, make_user):
    """Every entry point goes through the services, which check again."""
    details = services.SignUpDetails(
        role=Role.PARTICIPANT,
        display_name="Eve\r\nBcc: victim@example.org",
        email="svc@example.org",
        password=PASSPHRASE,
        country="SE",
        language="en",
    )
    with pytest.raises(services.InvalidName):
        services.sign_up(session, details, utcnow())
    user = session.get(User, make_user(Role.PARTICIPANT, display_name="Before").id)
    with pytest.raises(services.InvalidName):
        services.update_profile(
            session,
            user,
            services.ProfileDetails(display_name="Eve\u202e", country="SE", language="en"),
            utcnow(),
        )
    with pytest.raises(services.InvalidName):
        services.create_user_by_cli(
            session,
            email="cli@example.org",
            password=PASSPHRASE,
            role=Role.STAFF,
            display_name="Eve\nAdams",
            country="SE",
            language="en",
            now=utcnow(),
        )


# The command line ---------------------------------------------------------------------------
def test_users_create_refuses_a_bad_name_and_tidies_a_good_one(runner, session):
    refused = runner.invoke(
        args=["users", "create", "--role", "staff", "--email", "a@centre.example"]
        + ["--name", "Eve\r\nBcc: victim@example.org", "--password-stdin"],
        input=PASSPHRASE + "\n",
    )
    assert refused.exit_code != 0
    assert NAME_PROBLEM in refused.output
    assert _account(session, "a@centre.example") is None
    created = runner.invoke(
        args=["users", "create", "--role", "staff", "--email", "b@centre.example"]
        + ["--name", " Ann   Lee ", "--password-stdin"],
        input=PASSPHRASE + "\n",
    )
    assert created.exit_code == 0, created.output
    assert _account(session, "b@centre.example").display_name == "Ann Lee"


# Newsletter sign-up -------------------------------------------------------------------------------
def test_newsletter_sign_up_refuses_a_bad_name_at_the_field(client, session, mailbox):
    research = make_list(session, "Research updates")
    session.commit()
    form = {"email": "reader@example.org", "language": "en", "lists": [research.id]}
    refused = post_form(client, "/newsletters/subscribe", {**form, "name": "Ana\r\nBcc: x@y.org"})
    assert refused.status_code == 400
    assert SHOWN_PROBLEM in refused.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 0
    assert mailbox.messages == []
    accepted = post_form(client, "/newsletters/subscribe", {**form, "name": " Ana   María "})
    assert accepted.status_code == 303
    session.expire_all()
    assert session.scalar(sa.select(Subscriber.name)) == "Ana María"


def test_newsletter_sign_up_service_refuses_a_bad_name(session):
    research = make_list(session, "Research updates")
    with pytest.raises(newsletter_lists.InvalidChoice, match="invisible formatting"):
        newsletter_lists.sign_up(
            session,
            name="Ana\u202e",
            email="reader@example.org",
            language="en",
            list_ids=[research.id],
            now=utcnow(),
        )
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 0


# Email headers ----------------------------------------------------------------------------------
def _raw_headers(path: Path) -> list[str]:
    """The header lines of an .eml file as written (before any parsing)."""
    head = path.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return [line for line in head.decode().splitlines() if line and not line[0].isspace()]


def test_a_stored_name_with_a_line_break_cannot_add_headers(app, client, session, make_user):
    """A row from before names were checked: the email greeting it still has one To header."""
    user = make_user(Role.PARTICIPANT, email="old.row@example.org")
    session.execute(
        sa.update(User)
        .where(User.id == user.id)
        .values(display_name="Eve\r\nBcc: victim@example.org\r\nSubject: forged")
    )
    session.commit()
    assert post_form(client, "/reset-password", {"email": "old.row@example.org"}).status_code == 200
    [path] = sorted(Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml"))
    headers = _raw_headers(path)
    names = [line.split(":", 1)[0].lower() for line in headers]
    assert names.count("to") == 1 and names.count("subject") == 1
    assert "bcc" not in names
    parsed = message_from_bytes(path.read_bytes(), policy=email_policy.default)
    assert parsed["To"] == "old.row@example.org"
    assert parsed["Subject"] == "Reset your Engage password"


def test_header_values_with_line_breaks_are_written_on_one_line(tmp_path):
    """Text people typed may reach a subject (a name placeholder, a title): it stays one line,
    in written files and in SendGrid requests alike."""
    sender = "Engage <no-reply@engage.example>"
    message = mail.Message(
        to="reader@example.org",
        subject="Hello Eve\r\nBcc: victim@example.org",
        text="Hi",
        html="<p>Hi</p>",
        headers={"X-Note": "a\nb"},
    )
    backend = mail.FileBackend(tmp_path)
    backend.send(message, sender)
    [path] = list(tmp_path.glob("*.eml"))
    names = [line.split(":", 1)[0].lower() for line in _raw_headers(path)]
    assert names.count("to") == 1 and "bcc" not in names
    parsed = message_from_bytes(path.read_bytes(), policy=email_policy.default)
    assert parsed["Subject"] == "Hello Eve Bcc: victim@example.org"
    assert parsed["From"] == sender

    body = mail.SendGridBackend.build_request_body(message, sender)
    assert "\n" not in body["subject"] and "\r" not in body["subject"]
    batch = mail.Batch(
        subject="Hello -name-",
        text="Hi -name-",
        html="<p>Hi -name_html-</p>",
        recipients=[
            mail.BatchRecipient(
                to="reader@example.org",
                substitutions={"-name-": "Eve\r\nBcc: victim@example.org"},
            )
        ],
    )
    [personalization] = mail.SendGridBackend.build_batch_body(batch, sender)["personalizations"]
    assert personalization["subject"] == "Hello Eve Bcc: victim@example.org"


def test_a_signed_in_person_with_an_old_bad_name_can_still_use_the_site(client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    session.execute(sa.update(User).where(User.id == user.id).values(display_name="Eve\nAdams"))
    session.commit()
    sign_in(client, user)
    page = client.get("/account")
    assert page.status_code == 200
    # Saving the profile asks for a name that can be kept.
    response = post_form(
        client, "/account", {"display_name": "Eve\nAdams", "country": "SE", "language": "en"}
    )
    assert response.status_code == 400 and SHOWN_PROBLEM in response.get_data(as_text=True)
