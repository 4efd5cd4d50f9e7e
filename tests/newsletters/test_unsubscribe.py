"""Unsubscribing through HTTP: the emailed link's page and its buttons, RFC 8058 one-click
POSTs from mail programs (no cookie, no CSRF token), the List-Unsubscribe mailto's inbound
hook, and forged tokens that change nothing."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from engage.accounts.models import Role
from newsletters import content
from newsletters.models import SubscriptionStatus
from newsletters.tokens import make_unsubscribe_token
from tests.conftest import post_form
from tests.newsletters.support import make_list, subscribe_email, subscribe_user
from tests.newsletters.test_lists import SECRET, _statuses

FORGED = [
    "1.1.AAAAAAAAAAAAAAAAAAAAAAAA",
    "not-a-token",
    "1.2",
    "..",
    "9" * 400,
]


@pytest.fixture
def reader(session):
    """A subscriber without an account on two lists, and their token for the first."""
    research = make_list(session, "Research updates")
    sharing = make_list(session, "Data-sharing initiative news")
    subscriber = subscribe_email(session, "ana@example.org", [research, sharing])
    session.commit()
    return subscriber, make_unsubscribe_token(SECRET, subscriber.id, research.id)


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_the_unsubscribe_page_names_the_list_and_its_button_unsubscribes(client, session, reader):
    subscriber, token = reader
    page = client.get(f"/newsletters/unsubscribe/{token}")
    assert page.status_code == 200
    assert "<h1>Unsubscribe from “Research updates”</h1>" in _text(page)
    assert re.search(r"<button[^>]*>Unsubscribe from “Research updates”</button>", _text(page))
    assert "Stay subscribed and go to the home page" in _text(page)
    # Opening the page (as a mail scanner would) changes nothing.
    assert _statuses(session, subscriber.id)["Research updates"] == SubscriptionStatus.CONFIRMED

    done = post_form(client, f"/newsletters/unsubscribe/{token}/confirm")
    assert done.status_code == 303
    page = _text(client.get(done.headers["Location"]))
    assert "You are unsubscribed from “Research updates”." in page
    assert '<h1 id="unsubscribed" data-return-focus>You are unsubscribed</h1>' in page
    assert done.headers["Location"].endswith("#unsubscribed")
    assert _statuses(session, subscriber.id) == {
        "Research updates": SubscriptionStatus.UNSUBSCRIBED,
        "Data-sharing initiative news": SubscriptionStatus.CONFIRMED,
    }

    again = post_form(client, f"/newsletters/unsubscribe/{token}/confirm")
    assert "You were already unsubscribed" in _text(client.get(again.headers["Location"]))


def test_the_page_button_needs_its_csrf_token(client, session, reader):
    subscriber, token = reader
    client.get(f"/newsletters/unsubscribe/{token}")
    response = client.post(f"/newsletters/unsubscribe/{token}/confirm", data={})
    assert response.status_code == 400
    assert _statuses(session, subscriber.id)["Research updates"] == SubscriptionStatus.CONFIRMED


def test_unsubscribe_from_every_list(client, session, reader):
    subscriber, token = reader
    done = post_form(client, f"/newsletters/unsubscribe/{token}/all")
    assert done.status_code == 303
    assert "every newsletter" in _text(client.get(done.headers["Location"]))
    assert set(_statuses(session, subscriber.id).values()) == {SubscriptionStatus.UNSUBSCRIBED}


def test_one_click_post_from_a_mail_program_unsubscribes_without_cookie_or_csrf(
    app, session, reader
):
    subscriber, token = reader
    headers = content.list_unsubscribe_headers("http://engage.test", token, None)
    url = re.match(r"<([^>]+)>", headers["List-Unsubscribe"]).group(1)
    body = dict([headers["List-Unsubscribe-Post"].split("=", 1)])
    mail_program = app.test_client(use_cookies=False)

    first = mail_program.post(urlsplit(url).path, data=body)
    second = mail_program.post(urlsplit(url).path, data=body)

    assert (first.status_code, second.status_code) == (200, 200)
    assert "Set-Cookie" not in first.headers
    assert _statuses(session, subscriber.id) == {
        "Research updates": SubscriptionStatus.UNSUBSCRIBED,
        "Data-sharing initiative news": SubscriptionStatus.CONFIRMED,
    }


def test_a_post_that_is_not_one_click_changes_nothing(app, session, reader):
    subscriber, token = reader
    response = app.test_client(use_cookies=False).post(
        f"/newsletters/unsubscribe/{token}", data={"List-Unsubscribe": "maybe"}
    )
    assert response.status_code == 400
    assert _statuses(session, subscriber.id)["Research updates"] == SubscriptionStatus.CONFIRMED


@pytest.mark.parametrize("token", FORGED)
def test_forged_unsubscribe_tokens_answer_400_and_change_nothing(
    app, client, session, reader, token
):
    subscriber, real = reader
    forged = token if token != FORGED[0] else f"{subscriber.id}.{real.split('.')[1]}.{'A' * 24}"
    one_click = app.test_client(use_cookies=False).post(
        f"/newsletters/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}
    )
    answers = [
        client.get(f"/newsletters/unsubscribe/{forged}"),
        post_form(client, f"/newsletters/unsubscribe/{forged}/confirm"),
        post_form(client, f"/newsletters/unsubscribe/{forged}/all"),
    ]
    assert one_click.status_code == 400
    assert "This unsubscribe link is not valid." in _text(one_click)
    for answer in answers:
        assert answer.status_code == 400
        assert "This unsubscribe link is not valid." in _text(answer)
    assert set(_statuses(session, subscriber.id).values()) == {SubscriptionStatus.CONFIRMED}


def test_an_account_holders_unsubscribe_page_links_to_preferences(client, session, make_user):
    person = make_user(Role.PARTICIPANT)
    research = make_list(session)
    subscriber = subscribe_user(session, person.id, [research])
    session.commit()
    token = make_unsubscribe_token(SECRET, subscriber.id, research.id)

    page = _text(client.get(f"/newsletters/unsubscribe/{token}"))
    assert 'href="/newsletters/preferences"' in page


def test_the_mailto_inbound_hook_unsubscribes_and_always_answers_200(app, session, reader):
    subscriber, token = reader
    hook = app.test_client(use_cookies=False)
    ignored = [
        hook.post("/newsletters/inbound-unsubscribe", data={"subject": "hello"}),
        hook.post("/newsletters/inbound-unsubscribe", data={"subject": "unsubscribe 1.1.AAAA"}),
        hook.post("/newsletters/inbound-unsubscribe", data={}),
    ]
    assert [r.status_code for r in ignored] == [200, 200, 200]
    assert _statuses(session, subscriber.id)["Research updates"] == SubscriptionStatus.CONFIRMED

    done = hook.post(
        "/newsletters/inbound-unsubscribe",
        data={"subject": f"Re: unsubscribe {token}", "from": "ana@example.org"},
        content_type="multipart/form-data",
    )
    assert done.status_code == 200
    assert _statuses(session, subscriber.id)["Research updates"] == SubscriptionStatus.UNSUBSCRIBED
