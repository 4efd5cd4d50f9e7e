"""The mailing-list pages through HTTP: preferences for account holders, public sign-up with
the emailed confirmation link, and staff's list pages."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role
from engage.outbox import OutboxMessage
from engage.timeutil import utcnow
from newsletters import lists
from newsletters.models import (
    ListVisibility,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from tests import consent_support
from tests.conftest import post_form
from tests.newsletters.support import make_list, subscribe_email
from tests.newsletters.test_lists import _old_confirm_token, _statuses


def _subscriber_of_email(session, address: str) -> Subscriber | None:
    session.expire_all()
    return session.scalar(sa.select(Subscriber).where(Subscriber.email == address))


def _subscriber_of_user(session, user_id: int) -> Subscriber | None:
    session.expire_all()
    return session.scalar(sa.select(Subscriber).where(Subscriber.user_id == user_id))


def _text(response) -> str:
    return response.get_data(as_text=True)


# Preferences ----------------------------------------------------------------------------------
def test_visitors_are_sent_to_sign_in_for_preferences(client):
    response = client.get("/newsletters/preferences")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=/newsletters/preferences")


def test_an_account_holder_chooses_their_newsletters(client, session, as_role):
    research = make_list(session, "Research updates")
    progress = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    session.commit()
    person = as_role(Role.ORGANISATION)

    page = client.get("/newsletters/preferences")
    assert page.status_code == 200
    assert f'<label for="lists-{research.id}">' in _text(page)
    assert "News about research." in _text(page)

    saved = post_form(client, "/newsletters/preferences", {"lists": [research.id, progress.id]})
    assert saved.status_code == 303
    page = client.get("/newsletters/preferences")
    assert "You are now subscribed to “Research updates” and “Progress reports”." in _text(page)
    assert re.search(rf'value="{progress.id}" id="lists-{progress.id}"[^>]*checked', _text(page))

    post_form(client, "/newsletters/preferences", {"lists": [progress.id]})
    subscriber = _subscriber_of_user(session, person.id)
    assert _statuses(session, subscriber.id) == {
        "Research updates": SubscriptionStatus.UNSUBSCRIBED,
        "Progress reports": SubscriptionStatus.CONFIRMED,
    }


@pytest.mark.parametrize(
    "chosen", ["987654", "abc", "-1", "0", "1.5", "²", "١٢", "99999999999999999999"]
)
def test_preferences_refuse_unknown_lists_and_change_nothing(client, session, as_role, chosen):
    research = make_list(session)
    session.commit()
    person = as_role(Role.PARTICIPANT)

    response = post_form(client, "/newsletters/preferences", {"lists": [research.id, chosen]})
    assert response.status_code == 400
    assert "you chose is not" in _text(response)
    assert _subscriber_of_user(session, person.id) is None


def test_a_list_needing_consent_links_to_the_consent_page_until_allowed(
    app, client, session, as_role, make_user
):
    consent_support.publish(session, make_user(Role.STAFF))
    survey = lists.ensure_default_lists(session, utcnow())[2]
    session.commit()
    person = as_role(Role.PARTICIPANT)
    consent_support.join(app, session, person, SURVEY_RECONTACT=False)

    page = _text(client.get("/newsletters/preferences"))
    box = re.search(rf'<input type="checkbox"[^>]*id="lists-{survey.id}"[^>]*>', page).group(0)
    assert "disabled" in box
    assert "Your consent does not currently allow" in page
    assert 'href="/consent"' in page
    refused = post_form(client, "/newsletters/preferences", {"lists": [survey.id]})
    assert refused.status_code == 400
    assert "You cannot subscribe to “Survey alerts”" in _text(refused)

    consent_support.join(app, session, person, SURVEY_RECONTACT=True)
    assert post_form(client, "/newsletters/preferences", {"lists": [survey.id]}).status_code == 303
    subscriber = _subscriber_of_user(session, person.id)
    assert _statuses(session, subscriber.id) == {"Survey alerts": SubscriptionStatus.CONFIRMED}


# Public sign-up -------------------------------------------------------------------------------
def test_public_sign_up_confirmation_email_and_confirm_button(client, session, mailbox):
    research = make_list(session, "Research updates")
    make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    session.commit()

    page = _text(client.get("/newsletters/subscribe"))
    assert "Research updates" in page and "Progress reports" not in page
    response = post_form(
        client,
        "/newsletters/subscribe",
        {"name": "Ana", "email": "Ana@Example.org", "language": "es", "lists": [research.id]},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/newsletters/subscribe/check-email#check-email"
    assert "Check your email" in _text(client.get(response.headers["Location"]))

    message = mailbox.last_to("ana@example.org")
    assert "Research updates" in message.text
    link = message.link("/newsletters/confirm/")
    assert link.startswith("http://engage.test/newsletters/confirm/")
    path = link.removeprefix("http://engage.test")

    # Opening the link (as a mail scanner would) changes nothing.
    page = client.get(path)
    assert page.status_code == 200
    assert "Confirm my subscription" in _text(page)
    subscriber = _subscriber_of_email(session, "ana@example.org")
    assert _statuses(session, subscriber.id) == {"Research updates": SubscriptionStatus.PENDING}

    done = post_form(client, path)
    assert done.status_code == 303
    page = _text(client.get(done.headers["Location"]))
    assert "Thank you: your subscription is confirmed." in page
    assert "You are subscribed to" in page
    assert _statuses(session, subscriber.id) == {"Research updates": SubscriptionStatus.CONFIRMED}

    again = post_form(client, path)
    assert "already confirmed" in _text(client.get(again.headers["Location"]))


def test_a_double_click_sends_one_email_and_a_known_address_gets_the_same_answer(
    client, session, mailbox
):
    research = make_list(session)
    subscribe_email(session, "known@example.org", [research])
    session.commit()
    form = {"name": "Ana", "email": "ana@example.org", "language": "en", "lists": [research.id]}

    answers = [post_form(client, "/newsletters/subscribe", form) for _ in range(2)]
    known = post_form(client, "/newsletters/subscribe", {**form, "email": "known@example.org"})

    assert [a.status_code for a in answers] + [known.status_code] == [303, 303, 303]
    assert {a.headers["Location"] for a in [*answers, known]} == {
        "/newsletters/subscribe/check-email#check-email"
    }
    assert len(mailbox.to("ana@example.org")) == 1
    assert mailbox.to("known@example.org") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": "not-an-address"}, "Enter an email address like name@example.org."),
        ({"email": "a" * 250 + "@example.org"}, "Use at most 254 characters."),
        ({"name": "n" * 81}, "Use at most 80 characters."),
        ({"name": ""}, "Enter your name."),
        ({"language": "xx"}, "Not a valid choice"),
        ({"lists": []}, "Choose at least one newsletter."),
        ({"lists": ["members"]}, "not open to sign-up"),
        ({"lists": ["987654"]}, "not open to sign-up"),
        ({"lists": ["1 OR 1=1"]}, "A list you chose is not available."),
        ({"name": "Ana\x00"}, "NUL"),
    ],
)
def test_hostile_sign_ups_are_refused_with_a_message(client, session, mailbox, change, message):
    research = make_list(session)
    members = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    session.commit()
    form = {"name": "Ana", "email": "ana@example.org", "language": "en", "lists": [research.id]}
    form.update(change)
    if form["lists"] == ["members"]:
        form["lists"] = [research.id, members.id]

    response = post_form(client, "/newsletters/subscribe", form)
    assert response.status_code == 400
    assert message in _text(response)
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0


def test_what_a_stranger_types_never_reaches_the_confirmation_email(client, session, mailbox):
    research = make_list(session)
    session.commit()
    response = post_form(
        client,
        "/newsletters/subscribe",
        {
            "name": "<script>alert(1)</script> visit evil.example",
            "email": "x@example.org",
            "language": "en",
            "lists": [research.id],
        },
    )
    assert response.status_code == 303
    message = mailbox.last_to("x@example.org")
    assert "evil.example" not in message.text and "evil.example" not in message.html


@pytest.mark.parametrize("kind", ["expired", "forged"])
def test_expired_or_forged_confirmation_links_answer_400_and_change_nothing(client, session, kind):
    research = make_list(session)
    subscriber = subscribe_email(
        session, "ana@example.org", [research], status=SubscriptionStatus.PENDING
    )
    session.commit()
    subscription_id = session.scalar(sa.select(Subscription.id))
    if kind == "expired":
        token = _old_confirm_token(subscription_id, lists.CONFIRM_REPEAT_WINDOW * 700)
        message = "This confirmation link has expired. Please sign up again."
    else:
        token = _old_confirm_token(subscription_id, lists.CONFIRM_REPEAT_WINDOW)[:-2] + "xx"
        message = "This confirmation link is not valid."

    for response in (
        client.get(f"/newsletters/confirm/{token}"),
        post_form(client, f"/newsletters/confirm/{token}"),
    ):
        assert response.status_code == 400
        assert message in _text(response)
    assert _statuses(session, subscriber.id) == {"Research updates": SubscriptionStatus.PENDING}


# Staff list pages -----------------------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.CUSTODIAN])
def test_list_pages_are_for_staff_only(client, session, as_role, role):
    research = make_list(session)
    session.commit()
    as_role(role)
    assert client.get("/staff/newsletters/lists").status_code == 403
    assert client.get("/staff/newsletters/lists/new").status_code == 403
    assert post_form(client, "/staff/newsletters/lists/new", {"name": "Mine"}).status_code == 403
    archived = post_form(client, f"/staff/newsletters/lists/{research.id}/archive")
    assert archived.status_code == 403
    session.expire_all()
    assert session.get(MailingList, research.id).is_archived is False
    assert session.scalar(sa.select(sa.func.count()).select_from(MailingList)) == 1


def test_visitors_are_sent_to_sign_in_for_list_pages(client):
    response = client.get("/staff/newsletters/lists")
    assert response.status_code == 302
    assert "/sign-in?next=/staff/newsletters/lists" in response.headers["Location"]


def test_staff_see_counts_create_edit_archive_and_restore(client, session, as_role, make_user):
    research = make_list(session, "Research updates")
    subscribe_email(session, "a@example.org", [research])
    subscribe_email(session, "b@example.org", [research], status=SubscriptionStatus.PENDING)
    session.commit()
    as_role(Role.STAFF)

    page = _text(client.get("/staff/newsletters/lists"))
    row = re.search(rf'<tr id="list-{research.id}"[^>]*>.*?</tr>', page, re.S).group(0)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["1", "1", "0"]

    created = post_form(
        client,
        "/staff/newsletters/lists/new",
        {
            "name": "Trial news",
            "description": "<script>alert(1)</script> Trials",
            "visibility": "public",
            "required_scope": "",
        },
    )
    assert created.status_code == 303
    page = _text(client.get("/staff/newsletters/lists"))
    assert "The list “Trial news” was created." in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Trials" in page
    assert "<script>alert(1)" not in page
    trial = session.scalar(sa.select(MailingList).where(MailingList.name == "Trial news"))

    form_page = _text(client.get(f"/staff/newsletters/lists/{trial.id}/edit"))
    assert 'value="Trial news"' in form_page
    edited = post_form(
        client,
        f"/staff/newsletters/lists/{trial.id}/edit",
        {"name": "Trials", "description": "", "visibility": "public", "required_scope": ""},
    )
    assert edited.status_code == 303
    assert f'id="lists-{trial.id}"' in _text(client.get("/newsletters/subscribe"))
    stale = post_form(
        client, f"/staff/newsletters/lists/{trial.id}/archive", {"name": "Trial news"}
    )
    assert stale.status_code == 400
    assert "This page is out of date" in _text(stale)
    archived = post_form(client, f"/staff/newsletters/lists/{trial.id}/archive", {"name": "Trials"})
    assert archived.status_code == 303
    session.expire_all()
    trial = session.get(MailingList, trial.id)
    assert (trial.name, trial.visibility, trial.is_archived) == (
        "Trials",
        ListVisibility.PUBLIC,
        True,
    )
    # An archived list is not offered for sign-up.
    assert f'id="lists-{trial.id}"' not in _text(client.get("/newsletters/subscribe"))
    restored = post_form(client, f"/staff/newsletters/lists/{trial.id}/restore", {"name": "Trials"})
    assert restored.status_code == 303
    session.expire_all()
    assert session.get(MailingList, trial.id).is_archived is False


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "x" * 121}, "Use at most 120 characters."),
        ({"name": ""}, "Give the list a name."),
        ({"name": "research updates"}, "Another list is already called"),
        ({"description": "d" * 1001}, "Use at most 1,000 characters."),
        ({"visibility": "everyone"}, "Not a valid choice"),
        ({"required_scope": "MADE_UP"}, "Not a valid choice"),
        ({"required_scope": "SURVEY_RECONTACT"}, "must be for account holders only"),
    ],
)
def test_hostile_list_forms_are_refused_with_a_message(
    client, session, as_role, make_user, form, message
):
    consent_support.publish(session, make_user(Role.STAFF))
    make_list(session, "Research updates")
    session.commit()
    as_role(Role.STAFF)
    data = {"name": "New list", "description": "", "visibility": "public", "required_scope": ""}
    data.update(form)

    response = post_form(client, "/staff/newsletters/lists/new", data)
    assert response.status_code == 400
    assert message in _text(response)
    assert 'aria-describedby="' in _text(response)
    assert session.scalar(sa.select(sa.func.count()).select_from(MailingList)) == 1


def test_unknown_lists_are_404_for_staff(client, as_role):
    as_role(Role.STAFF)
    assert client.get("/staff/newsletters/lists/987654/edit").status_code == 404
    assert post_form(client, "/staff/newsletters/lists/987654/archive").status_code == 404
