"""The web archive of past newsletters: who may read what, paging, and the body as sent
(sanitised, addressed to no one by name)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engage.accounts.models import Role
from engage.timeutil import utcnow
from newsletters.models import CampaignStatus, ListVisibility, Send, SendStatus
from tests.newsletters.support import make_campaign, make_list
from tests.newsletters.test_campaign_views import assert_readable

ARCHIVE = "/newsletters/archive"


def text(response) -> str:
    return response.get_data(as_text=True)


def past_send(
    session,
    lists,
    *,
    subject: str = "Winter research news",
    body: str = "Dear {name},\n\nThe **study** has ended. <script>alert(1)</script>",
    status: SendStatus = SendStatus.SENT,
    audience: dict | None = None,
    days_ago: int = 1,
    audience_size: int = 3,
) -> Send:
    """A campaign on ``lists`` with one send, written straight to the database (committed)."""
    campaign = make_campaign(
        session, lists, subject=subject, body=body, status=CampaignStatus.SENT, audience=audience
    )
    when = utcnow() - timedelta(days=days_ago)
    send = Send(
        campaign_id=campaign.id,
        occurrence_at=when,
        status=status,
        subject=subject,
        preheader="The season in short",
        body_markdown=body,
        audience_size=audience_size,
        started_at=when,
        finished_at=when,
    )
    session.add(send)
    session.commit()
    return send


@pytest.fixture
def public_list(session):
    return make_list(session, "Research updates")


@pytest.fixture
def members_list(session):
    return make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)


def test_anyone_reads_what_went_to_public_lists(client, session, public_list):
    send = past_send(session, [public_list])

    listing = text(client.get(ARCHIVE))
    assert "Winter research news" in listing
    assert f'href="/newsletters/archive/{send.id}"' in listing
    assert "Research update" in listing

    assert_readable(listing)
    page = client.get(f"{ARCHIVE}/{send.id}")
    assert page.status_code == 200
    body = text(page)
    assert_readable(body)
    assert "<h1 id=\"newsletter-heading\">Winter research news</h1>" in body
    assert "Dear reader," in body
    assert "<strong>study</strong>" in body
    assert "<script>alert" not in body
    assert "{name}" not in body


def test_account_only_newsletters_are_for_signed_in_account_holders(
    client, session, as_role, members_list, public_list
):
    members = past_send(session, [members_list], subject="For members")
    mixed = past_send(session, [public_list, members_list], subject="For both")

    assert "For members" not in text(client.get(ARCHIVE))
    assert "For both" not in text(client.get(ARCHIVE))
    assert client.get(f"{ARCHIVE}/{members.id}").status_code == 404
    assert client.get(f"{ARCHIVE}/{mixed.id}").status_code == 404

    as_role(Role.ORGANISATION)
    listing = text(client.get(ARCHIVE))
    assert "For members" in listing and "For both" in listing
    assert client.get(f"{ARCHIVE}/{members.id}").status_code == 200


def test_a_public_list_newsletter_aimed_at_account_holders_is_not_public(
    client, session, as_role, public_list
):
    aimed = past_send(
        session, [public_list], subject="For clinicians", audience={"roles": ["clinician"]}
    )
    by_language = past_send(
        session, [public_list], subject="In Swedish", audience={"languages": ["sv"]}
    )

    assert client.get(f"{ARCHIVE}/{aimed.id}").status_code == 404
    assert client.get(f"{ARCHIVE}/{by_language.id}").status_code == 200
    as_role(Role.PARTICIPANT)
    assert client.get(f"{ARCHIVE}/{aimed.id}").status_code == 200


@pytest.mark.parametrize(
    ("status", "size"),
    [
        (SendStatus.SENDING, 3),
        (SendStatus.PAUSED, 3),
        (SendStatus.CANCELLED, 3),
        (SendStatus.SENT, 0),
    ],
)
def test_only_newsletters_that_went_out_are_archived(
    client, session, as_role, public_list, status, size
):
    send = past_send(session, [public_list], status=status, audience_size=size)
    as_role(Role.PARTICIPANT)
    assert "Winter research news" not in text(client.get(ARCHIVE))
    assert client.get(f"{ARCHIVE}/{send.id}").status_code == 404


def test_the_archive_is_paged_newest_first(client, session, public_list):
    for n in range(23):
        past_send(session, [public_list], subject=f"Issue {n:02d}", days_ago=n + 1)

    first = text(client.get(ARCHIVE))
    assert "Issue 00" in first and "Issue 19" in first and "Issue 20" not in first
    assert first.index("Issue 00") < first.index("Issue 01")
    assert "Page 1 of 2" in first
    second = text(client.get(f"{ARCHIVE}?page=2"))
    assert "Issue 20" in second and "Issue 22" in second and "Issue 00" not in second
    assert client.get(f"{ARCHIVE}?page=9").status_code == 404
    assert client.get(f"{ARCHIVE}?page=abc").status_code == 200


def test_an_empty_archive_says_so(client):
    assert "No newsletters have been sent yet." in text(client.get(ARCHIVE))
