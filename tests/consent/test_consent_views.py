"""Consent pages through HTTP: the participant's dashboard, review, history, receipts and
exports; staff pages for versions, erasure requests and paper forms."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from engage.accounts.models import Role
from engage.consent import page_queries, queries
from engage.consent.models import (
    ConsentFormVersion,
    ConsentParticipant,
    ConsentReceipt,
    ConsentScope,
    Decision,
    ErasureRequest,
    ErasureStatus,
    VersionStatus,
)
from engage.consent.seed import FIRST_FORM, FIRST_SCOPES
from engage.db import Database
from tests.conftest import post_form, sign_in
from tests.consent_support import (
    ALL_CODES,
    NEW_SCOPE,
    OPTIONAL,
    REQUIRED,
    STATE_FIELD,
    VERSION_FIELD,
    decide,
    events_of,
    join,
    ledger_size,
    publish,
    reworded,
)

RECEIPT_LINK = re.compile(r"/consent/receipts/([0-9a-f-]{36})")


@pytest.fixture
def staff(make_user):
    return make_user(Role.STAFF)


@pytest.fixture
def first(session, staff):
    return publish(session, staff)


@pytest.fixture
def me(client, as_role, first):
    """A participant signed in on ``client`` (no decisions yet)."""
    return as_role(Role.PARTICIPANT)


def page_state(client, url="/consent"):
    """The version id and state token the page's forms carry."""
    page = client.get(url).get_data(as_text=True)
    return {
        "version_id": VERSION_FIELD.search(page).group(1),
        "state": STATE_FIELD.search(page).group(1),
    }


def choose(client, scope, decision):
    """Press one scope's button on the dashboard: a single POST."""
    return post_form(
        client, "/consent/choice", {**page_state(client), "scope": scope, "decision": decision}
    )


def leave(client, option):
    """Leave in two steps: choose ``option`` on the leaving page, then press the button of the
    confirmation page that answers."""
    data = {**page_state(client, "/consent/leave"), "option": option}
    confirmation = post_form(client, "/consent/leave", data)
    assert confirmation.status_code == 200, confirmation.get_data(as_text=True)
    page = confirmation.get_data(as_text=True)
    confirmed = {
        "version_id": VERSION_FIELD.search(page).group(1),
        "state": STATE_FIELD.search(page).group(1),
        "option": re.search(r'name="option" value="([^"]+)"', page).group(1),
    }
    return post_form(client, "/consent/leave/confirm", confirmed)


def current(session, person):
    """Scope code → current decision of ``person``."""
    session.expire_all()
    board = page_queries.dashboard(session, person.id)
    return {row.scope.code: (row.choice.decision if row.choice else None) for row in board.rows}


def review_all(client, **allow):
    """Submit the review form: required allowed, optional as given."""
    data = page_state(client, "/consent/review")
    for code in ALL_CODES:
        allowed = allow.get(code, code in REQUIRED)
        data[f"scope_{code}"] = "permit" if allowed else "deny"
    return post_form(client, "/consent/review", data)


# Joining and the dashboard -----------------------------------------------------------------------
def test_a_new_participant_is_asked_to_read_the_form_and_choose(client, session, me):
    page = client.get("/consent").get_data(as_text=True)
    assert "You have not given your consent yet." in page
    assert page.count("Not decided yet") == len(ALL_CODES)
    review = client.get("/consent/review").get_data(as_text=True)
    assert "We ask you to share your MS registry records" in review  # the summary
    assert "Read the full text" in review and "<legend>" in review
    assert "Share my registry records with the network (required to take part)" in review

    response = review_all(client, GENOMIC_DATA=True)
    assert response.status_code == 303 and response.headers["Location"].endswith("/consent")
    assert current(session, me)["GENOMIC_DATA"] == Decision.PERMIT
    assert current(session, me)["COMMERCIAL_RESEARCH"] == Decision.DENY
    page = client.get("/consent").get_data(as_text=True)
    assert "Thank you: your choices are saved." in page
    assert "You take part in the programme." in page
    assert "version 1 of the consent form" in page and "You last changed a choice on" in page


def test_the_review_form_needs_an_answer_for_every_scope(client, session, me):
    data = page_state(client, "/consent/review")
    data["scope_SHARE_RECORDS"] = "permit"
    response = post_form(client, "/consent/review", data)
    assert response.status_code == 400
    assert "Please correct the following" in response.get_data(as_text=True)
    assert ledger_size(session) == 0


def test_the_dashboard_shows_each_choice_in_words_and_when_they_last_changed(
    app, client, session, me, staff
):
    join(app, session, me, GENOMIC_DATA=True)
    publish(session, staff, reworded("IMAGING_DATA"))
    page = client.get("/consent").get_data(as_text=True)
    genomic = page[page.index('id="scope-GENOMIC_DATA"') : page.index('id="scope-IMAGING_DATA"')]
    assert "Your choice:" in genomic and "Allowed" in genomic
    # When and on which version: one line for the page, each change in the history.
    assert "on version" not in genomic and "since" not in genomic
    assert re.search(
        r'You last changed a choice on <time datetime="[^"]+">\d\d \w+ \d{4}</time>', page
    )
    assert "consent form version 1" in client.get("/consent/history").get_data(as_text=True)
    imaging = page[
        page.index('id="scope-IMAGING_DATA"') : page.index('id="scope-SURVEY_RECONTACT"')
    ]
    assert "Needs your decision" in imaging and "changed in version 2" in imaging


# One step to change, one step to withdraw --------------------------------------------------------
def test_allowing_and_withdrawing_a_scope_each_take_one_post(app, client, session, me):
    join(app, session, me)
    before = ledger_size(session)
    response = choose(client, "GENOMIC_DATA", "permit")
    assert response.status_code == 303
    assert current(session, me)["GENOMIC_DATA"] == Decision.PERMIT
    response = choose(client, "GENOMIC_DATA", "deny")
    assert response.status_code == 303
    assert current(session, me)["GENOMIC_DATA"] == Decision.WITHDRAW
    assert ledger_size(session) == before + 2
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert (
        "Saved. You no longer allow: Include my genomic data. "
        "Your receipt for this change is in your consent history." in page
    )


def test_withdrawing_everything_optional_is_one_post(app, client, session, me):
    join(app, session, me, GENOMIC_DATA=True, IMAGING_DATA=True, TRIAL_CONTACT=True)
    page = client.get("/consent").get_data(as_text=True)
    assert "Withdraw everything optional" in page
    state = page_state(client, "/consent/withdraw-optional")
    response = post_form(client, "/consent/withdraw-optional", state)
    assert response.status_code == 303
    choices = current(session, me)
    assert [choices[c] for c in ("GENOMIC_DATA", "IMAGING_DATA", "TRIAL_CONTACT")] == [
        Decision.WITHDRAW
    ] * 3
    assert all(choices[c] == Decision.PERMIT for c in REQUIRED)
    assert "Done: you no longer allow anything optional." in client.get("/consent").get_data(
        as_text=True
    )


def test_required_scopes_explain_leaving_and_offer_three_choices(app, client, session, me):
    join(app, session, me, SURVEY_RECONTACT=True, GENOMIC_DATA=True)
    page = client.get("/consent").get_data(as_text=True)
    share = page[page.index('id="scope-SHARE_RECORDS"') : page.index('id="scope-MS_RESEARCH"')]
    assert "Required to take part" in share and "you leave the programme" in share
    assert 'value="deny"' not in share  # no plain "withdraw" button on a required scope
    assert 'href="/consent/leave"' in share
    page = client.get("/consent/leave").get_data(as_text=True)
    for option in ("stop_contact", "stop_use", "erase"):
        assert f'value="{option}"' in page
    assert "Stop contacting me" in page and "Stop future use of my data" in page
    assert "Ask for my data to be erased" in page

    response = leave(client, "stop_contact")
    assert response.status_code == 303
    choices = current(session, me)
    assert choices["SURVEY_RECONTACT"] == Decision.WITHDRAW
    assert choices["GENOMIC_DATA"] == Decision.PERMIT


def test_asking_for_erasure_reaches_the_staff_queue_and_its_status_reaches_the_person(
    app, client, session, me, staff, mailbox
):
    join(app, session, me, GENOMIC_DATA=True)
    response = leave(client, "erase")
    assert response.status_code == 303
    assert not queries.permits(session, me.id, ["SHARE_RECORDS"])
    page = client.get("/consent").get_data(as_text=True)
    assert "Received: waiting for the coordination centre" in page
    assert "You are not taking part in the programme at the moment." in page

    staff_client = client.application.test_client()
    sign_in(staff_client, staff)
    queue = staff_client.get("/staff/consent/erasure").get_data(as_text=True)
    assert me.email in queue and "Received" in queue
    request = session.scalar(sa.select(ErasureRequest))
    declined_without_note = post_form(
        staff_client, f"/staff/consent/erasure/{request.id}", {"status": "declined", "note": ""}
    )
    assert declined_without_note.status_code == 400
    assert "Explain to the participant why" in declined_without_note.get_data(as_text=True)
    for status, note in (("in_progress", ""), ("completed", "All six registries confirmed.")):
        response = post_form(
            staff_client, f"/staff/consent/erasure/{request.id}", {"status": status, "note": note}
        )
        assert response.status_code == 303
    session.expire_all()
    assert session.get(ErasureRequest, request.id).status == ErasureStatus.COMPLETED
    page = client.get("/consent").get_data(as_text=True)
    assert "Completed: your data has been erased" in page
    assert "All six registries confirmed." in page
    messages = mailbox.to(me.email)
    assert [m.subject for m in messages] == ["Your request to erase your data"] * 2
    assert "Completed: your data has been erased" in messages[-1].text


# Versions and review -----------------------------------------------------------------------------
def test_a_new_version_asks_for_a_review_showing_what_changed(app, client, session, me, staff):
    join(app, session, me, GENOMIC_DATA=True, TRIAL_CONTACT=True)
    scopes = [d for d in reworded("GENOMIC_DATA") if d.code != "TRIAL_CONTACT"] + [NEW_SCOPE]
    publish(session, staff, scopes)
    page = client.get("/consent").get_data(as_text=True)
    assert "Please review the consent form" in page and "You last reviewed version 1" in page
    assert "New choices:" in page and NEW_SCOPE.title in page
    assert "Reworded or changed choices:" in page
    assert (
        "Removed (no longer asked for or used):" in page
        and "Contact me about clinical trials" in page
    )

    review = client.get("/consent/review").get_data(as_text=True)
    assert "What changed since version 1" in review
    # Unchanged choices are filled in; the changed and new ones wait for an answer.
    assert (
        '<input checked id="scope_IMAGING_DATA-1" name="scope_IMAGING_DATA" required '
        'type="radio" value="deny">' in review
    )
    for value in ("permit", "deny"):  # changed: neither answer is filled in
        assert f'name="scope_GENOMIC_DATA" required type="radio" value="{value}">' in review
    assert '<input checked id="scope_GENOMIC_DATA' not in review

    data = page_state(client, "/consent/review")
    for row in page_queries.dashboard(session, me.id).rows:
        data[f"scope_{row.scope.code}"] = "permit" if row.scope.is_required else "deny"
    data["scope_GENOMIC_DATA"] = "permit"
    assert post_form(client, "/consent/review", data).status_code == 303
    session.expire_all()
    assert (
        session.get(ConsentParticipant, me.id).reviewed_version_id
        == page_queries.dashboard(session, me.id).version.id
    )
    assert "Please review the consent form" not in client.get("/consent").get_data(as_text=True)


def test_a_page_from_before_a_new_version_is_refused(app, client, session, me, staff):
    join(app, session, me)
    stale = page_state(client)
    publish(session, staff, reworded("GENOMIC_DATA"))
    before = ledger_size(session)
    response = post_form(
        client, "/consent/choice", {**stale, "scope": "IMAGING_DATA", "decision": "permit"}
    )
    assert response.status_code == 409
    assert "has been replaced by version 2" in response.get_data(as_text=True)
    assert ledger_size(session) == before


def test_a_stale_post_is_refused_and_nothing_recorded(app, client, session, me):
    join(app, session, me)
    state = page_state(client)
    data = {**state, "scope": "GENOMIC_DATA", "decision": "permit"}
    assert post_form(client, "/consent/choice", data).status_code == 303
    after_first = ledger_size(session)
    # Other forms from the same old page (a stale tab), asking for something not so now.
    stale_choice = post_form(client, "/consent/choice", {**data, "decision": "deny"})
    stale_tab = post_form(client, "/consent/withdraw-optional", state)
    stale_leave = post_form(client, "/consent/leave/confirm", {**state, "option": "stop_use"})
    for response in (stale_choice, stale_tab, stale_leave):
        assert response.status_code == 409
        page = response.get_data(as_text=True)
        assert "Your consent changed since this page was opened" in page
        assert "nothing was changed" in page
    assert ledger_size(session) == after_first
    assert current(session, me)["GENOMIC_DATA"] == Decision.PERMIT


def test_unknown_scopes_and_bad_versions_are_4xx_and_change_nothing(
    app, client, session, me, staff
):
    join(app, session, me)
    before = ledger_size(session)
    state = page_state(client)
    staff_client = client.application.test_client()
    sign_in(staff_client, staff)
    response = post_form(
        staff_client,
        "/staff/consent/forms/new",
        {
            "title": "Draft",
            "summary": "Short.",
            "body": "Body.",
            "ethics_reference": "EC-9",
            "language": "en",
        },
    )
    draft_id = int(response.headers["Location"].rsplit("/", 1)[1])
    for data in (
        {**state, "scope": "NOT_A_SCOPE", "decision": "permit"},
        {**state, "scope": "GENOMIC_DATA", "decision": "maybe"},
        {**state, "version_id": str(draft_id), "scope": "GENOMIC_DATA", "decision": "permit"},
        {**state, "version_id": "999999", "scope": "GENOMIC_DATA", "decision": "permit"},
        {**state, "version_id": "abc", "scope": "GENOMIC_DATA", "decision": "permit"},
        {"scope": "GENOMIC_DATA", "decision": "permit"},
    ):
        response = post_form(client, "/consent/choice", data)
        assert 400 <= response.status_code < 500, data
    assert ledger_size(session) == before


def test_a_repeated_click_after_the_change_was_saved_says_saved(app, client, session, me):
    """A double click: the second request comes from the same page, so it is refused as
    stale; since it asked for what is now saved, the person is told it is saved."""
    join(app, session, me)
    state = page_state(client)
    first = post_form(
        client, "/consent/choice", {**state, "scope": "GENOMIC_DATA", "decision": "permit"}
    )
    assert first.status_code == 303
    after_first = ledger_size(session)
    for url, data in (
        ("/consent/choice", {**state, "scope": "GENOMIC_DATA", "decision": "permit"}),
        ("/consent/choice", {**state, "scope": "IMAGING_DATA", "decision": "deny"}),
    ):
        response = post_form(client, url, data)
        assert response.status_code == 303, response.get_data(as_text=True)
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "Saved." in page
        assert "Your consent changed since this page was opened" not in page
    # Withdrawing everything optional twice from one page: the second hears it is done.
    state = page_state(client)
    assert post_form(client, "/consent/withdraw-optional", state).status_code == 303
    again = post_form(client, "/consent/withdraw-optional", state)
    assert again.status_code == 303
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "you no longer allow anything optional" in page
    assert ledger_size(session) == after_first + 1
    assert current(session, me)["GENOMIC_DATA"] == Decision.WITHDRAW


# History, receipts, exports ----------------------------------------------------------------------
def test_the_timeline_shows_every_change_newest_first_with_receipts(app, client, session, me):
    join(app, session, me)
    choose(client, "GENOMIC_DATA", "permit")
    choose(client, "GENOMIC_DATA", "deny")
    page = client.get("/consent/history").get_data(as_text=True)
    receipts = RECEIPT_LINK.findall(page)
    assert len(receipts) == 3
    assert page.index("Withdrawn") < page.index("Include my genomic data: <strong>Allowed")
    stored = [
        r.id
        for r in session.scalars(
            sa.select(ConsentReceipt)
            .where(ConsentReceipt.user_id == me.id)
            .order_by(ConsentReceipt.issued_at.desc())
        )
    ]
    assert receipts == stored


def test_receipt_links_name_the_second_and_what_changed(app, client, session, me):
    """Two changes within one minute: their receipt links still read differently."""
    moment = datetime(2030, 5, 4, 10, 15, 7, tzinfo=UTC)
    join(app, session, me, now=moment)
    decide(app, session, me, {"GENOMIC_DATA": True}, now=moment + timedelta(seconds=20))
    page = client.get("/consent/history").get_data(as_text=True)
    links = [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip()
        for text in re.findall(r'<a href="/consent/receipts/[^"]+">(.*?)</a>', page, re.S)
    ]
    assert len(links) == 2
    assert len(set(links)) == 2
    assert links[0].startswith("Receipt of 04 May 2030, 10:15:27 UTC:")
    assert "Include my genomic data allowed" in links[0]
    assert links[1].startswith("Receipt of 04 May 2030, 10:15:07 UTC:")


def test_receipt_page_json_download_and_cli_verification(
    app, client, session, me, runner, tmp_path
):
    join(app, session, me)
    choose(client, "IMAGING_DATA", "permit")
    receipt_id = RECEIPT_LINK.search(client.get("/consent/history").get_data(as_text=True)).group(1)
    page = client.get(f"/consent/receipts/{receipt_id}").get_data(as_text=True)
    for text in (
        receipt_id,
        "MS research network coordination centre",
        "EU",
        "Include my imaging data",
    ):
        assert text in page
    download = client.get(f"/consent/receipts/{receipt_id}.json")
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert "attachment" in download.headers["Content-Disposition"]
    document = json.loads(download.data)
    assert document["receipt_id"] == receipt_id
    assert {s["code"]: s["changed_now"] for s in document["scopes"]}["IMAGING_DATA"] is True
    assert set(document) >= {
        "receipt_id",
        "issued_at",
        "jurisdiction",
        "collection_method",
        "controller",
        "form",
        "scopes",
        "participant",
        "signature",
    }
    path = tmp_path / "receipt.json"
    path.write_bytes(download.data)
    ok = runner.invoke(args=["consent", "verify-receipt", str(path)])
    assert ok.exit_code == 0 and "VALID" in ok.output
    document["scopes"][0]["decision"] = "deny"
    path.write_text(json.dumps(document))
    bad = runner.invoke(args=["consent", "verify-receipt", str(path)])
    assert bad.exit_code != 0 and "INVALID" in bad.output


def test_json_export_holds_the_whole_history_under_the_pseudonym(app, client, session, me):
    join(app, session, me)
    choose(client, "GENOMIC_DATA", "permit")
    response = client.get("/consent/export.json")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    document = json.loads(response.data)
    pseudonym = session.get(ConsentParticipant, me.id).pseudonym
    assert document["participant"] == pseudonym
    assert me.email not in response.get_data(as_text=True)
    assert [e["seq"] for e in document["events"]] == list(range(1, 10))
    assert document["events"][-1]["hash"] == events_of(session, me)[-1].hash
    assert {c["scope_code"]: c["permitted"] for c in document["current"]}["GENOMIC_DATA"]
    assert document["form_versions"][0]["text_sha256"] == session.scalar(
        sa.select(ConsentFormVersion.text_sha256)
    )


def test_fhir_export_is_a_bundle_of_consents_one_per_decision(app, client, session, me):
    join(app, session, me)
    choose(client, "GENOMIC_DATA", "permit")
    response = client.get("/consent/export.fhir.json")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    bundle = json.loads(response.data)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "collection")
    consents = [entry["resource"] for entry in bundle["entry"]]
    assert len(consents) == 9 and {c["resourceType"] for c in consents} == {"Consent"}
    pseudonym = session.get(ConsentParticipant, me.id).pseudonym
    for consent, entry in zip(consents, bundle["entry"], strict=True):
        assert entry["fullUrl"].endswith(f"/fhir/Consent/{consent['id']}")
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", consent["id"])
        assert consent["patient"]["identifier"]["value"] == pseudonym
        assert consent["scope"]["coding"][0]["code"] == "research"
        assert consent["policy"][0]["uri"].startswith("http://engage.test/consent/forms/1#sha256=")
        assert consent["provision"]["type"] in ("permit", "deny")
    by_code = {}
    for consent in consents:
        code = consent["provision"]["code"][0]["coding"][0]["code"]
        by_code.setdefault(code, []).append(consent)
    genomic = by_code["GENOMIC_DATA"]
    assert [(c["status"], c["provision"]["type"]) for c in genomic] == [
        ("inactive", "deny"),
        ("active", "permit"),
    ]
    ms_research = by_code["MS_RESEARCH"][0]["provision"]["purpose"]
    assert {
        "system": "http://purl.obolibrary.org/obo/duo.owl",
        "code": "DUO:0000007",
        "display": "disease specific research",
    } in ms_research
    assert any(p["code"] == "MONDO:0005301" for p in ms_research)
    other = by_code["OTHER_HEALTH_RESEARCH"][0]["provision"]["purpose"]
    assert other[0]["code"] == "DUO:0000006"
    assert "purpose" not in by_code["SURVEY_RECONTACT"][0]["provision"]
    # The policy points at a page anyone can read.
    assert client.get("/consent/forms/1").status_code == 200


def test_published_versions_are_public_drafts_are_not(client, session, staff, first):
    page = client.get("/consent/forms/1").get_data(as_text=True)
    assert (
        FIRST_FORM.title in page and session.get(ConsentFormVersion, first.id).text_sha256 in page
    )
    staff_client = client.application.test_client()
    sign_in(staff_client, staff)
    post_form(
        staff_client,
        "/staff/consent/forms/new",
        {
            "title": "Draft",
            "summary": "Short.",
            "body": "B.",
            "ethics_reference": "E",
            "language": "en",
        },
    )
    assert client.get("/consent/forms/2").status_code == 404


# Nobody reads or changes another person's consent ------------------------------------------------
def test_a_participant_can_never_read_or_change_another_participants_consent(
    app, client, session, me, make_user
):
    other = make_user(Role.PARTICIPANT)
    join(app, session, other, GENOMIC_DATA=True)
    other_events = [(e.id, e.hash) for e in events_of(session, other)]
    other_receipt = session.scalar(
        sa.select(ConsentReceipt.id).where(ConsentReceipt.user_id == other.id)
    )
    other_state = page_queries.dashboard(session, other.id).state
    other_pseudonym = session.get(ConsentParticipant, other.id).pseudonym
    join(app, session, me)

    # Reading: their receipt is not found; my pages and exports never show them.
    assert client.get(f"/consent/receipts/{other_receipt}").status_code == 404
    assert client.get(f"/consent/receipts/{other_receipt}.json").status_code == 404
    for url in (
        "/consent",
        "/consent/review",
        "/consent/history",
        "/consent/export.json",
        "/consent/export.fhir.json",
        f"/consent?user_id={other.id}",
        f"/consent/history?user_id={other.id}",
        f"/consent/export.json?user_id={other.id}",
    ):
        response = client.get(url)
        body = response.get_data(as_text=True)
        assert response.status_code == 200, url
        assert other_pseudonym not in body and other_receipt not in body and other.email not in body
    # Staff pages about them are closed to participants.
    assert client.get(f"/staff/consent/participants/{other.id}").status_code == 403

    # Changing: forms naming them, or carrying their page state, change nobody but me (if anyone).
    mine = page_state(client)
    forged = {"user_id": str(other.id), "participant": str(other.id), "id": str(other.id)}
    posts = [
        ("/consent/choice", {**mine, **forged, "scope": "GENOMIC_DATA", "decision": "deny"}),
        (
            "/consent/choice",
            {
                "version_id": mine["version_id"],
                "state": other_state,
                "scope": "GENOMIC_DATA",
                "decision": "deny",
            },
        ),
        ("/consent/withdraw-optional", {"version_id": mine["version_id"], "state": other_state}),
        (
            "/consent/leave/confirm",
            {"version_id": mine["version_id"], "state": other_state, "option": "erase"},
        ),
        (f"/staff/consent/participants/{other.id}", {**mine, "reference": "x"}),
    ]
    for url, data in posts:
        post_form(client, url, data)
    assert [(e.id, e.hash) for e in events_of(session, other)] == other_events
    assert queries.permits(session, other.id, ["GENOMIC_DATA"])
    assert (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(ErasureRequest)
            .where(ErasureRequest.user_id == other.id)
        )
        == 0
    )
    # The first post (with my own state) was mine to make: only my ledger grew.
    assert current(session, me)["GENOMIC_DATA"] == Decision.DENY


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.CUSTODIAN, Role.ORGANISATION, Role.STAFF])
def test_other_roles_have_no_consent_dashboard(client, as_role, first, role):
    as_role(role)
    for url in ("/consent", "/consent/review", "/consent/history", "/consent/export.json"):
        assert client.get(url).status_code == 403


# Staff pages -------------------------------------------------------------------------------------
VERSION_DATA = {
    "title": "Taking part in MS research, second edition",
    "summary": "We ask you to share your records. You can say no to any choice.",
    "body": "## Why\n\nBecause research needs it.",
    "ethics_reference": "EC-2027-003",
    "language": "en",
}


def test_staff_draft_edit_and_publish_a_new_version_over_http(app, client, session, staff, first):
    sign_in(client, staff)
    form = client.get("/staff/consent/forms/new").get_data(as_text=True)
    assert FIRST_FORM.title in form  # starts from the current version
    response = post_form(client, "/staff/consent/forms/new", VERSION_DATA)
    assert response.status_code == 303
    version_url = response.headers["Location"]
    draft = session.scalar(sa.select(ConsentFormVersion).where(ConsentFormVersion.number == 2))
    assert [s.code for s in services_scopes(session, draft.id)] == [d.code for d in FIRST_SCOPES]
    page = client.get(version_url).get_data(as_text=True)
    assert "Flesch-Kincaid grade" in page and "the limit is 8" in page

    added = post_form(
        client,
        f"{version_url}/scopes",
        {
            "code": "biobank_samples",
            "title": "Use my stored blood samples",
            "explanation": "Samples may be tested.",
            "kind": "data_category",
            "duo_code": "",
        },
    )
    assert added.status_code == 303
    duplicate = post_form(
        client,
        f"{version_url}/scopes",
        {
            "code": "BIOBANK_SAMPLES",
            "title": "Again",
            "explanation": "x",
            "kind": "purpose",
            "duo_code": "",
        },
    )
    assert duplicate.status_code == 400
    assert "already has a scope with the code BIOBANK_SAMPLES" in duplicate.get_data(as_text=True)

    genomic = next(s for s in services_scopes(session, draft.id) if s.code == "GENOMIC_DATA")
    edit = post_form(
        client,
        f"/staff/consent/scopes/{genomic.id}/edit",
        {
            "code": "GENOMIC_DATA",
            "title": "Include my genomic and family-history data",
            "explanation": genomic.explanation,
            "kind": "data_category",
            "duo_code": "",
        },
    )
    assert edit.status_code == 303
    trial = next(s for s in services_scopes(session, draft.id) if s.code == "TRIAL_CONTACT")
    assert (
        post_form(client, f"/staff/consent/scopes/{trial.id}/remove", {"code": "WRONG"}).status_code
        == 400
    )
    assert (
        post_form(
            client, f"/staff/consent/scopes/{trial.id}/remove", {"code": "TRIAL_CONTACT"}
        ).status_code
        == 303
    )

    page = client.get(version_url).get_data(as_text=True)
    assert "Added: <code>BIOBANK_SAMPLES</code>" in page
    assert "Changed: <code>GENOMIC_DATA</code>" in page
    assert "Removed: <code>TRIAL_CONTACT</code>" in page

    unconfirmed = post_form(client, f"{version_url}/publish", {"justification": ""})
    assert unconfirmed.status_code == 400
    published = post_form(client, f"{version_url}/publish", {"confirm": "y"})
    assert published.status_code == 303
    assert "1 scope(s) added, 1 changed, 1 removed" in client.get(version_url).get_data(
        as_text=True
    )
    session.expire_all()
    assert session.get(ConsentFormVersion, draft.id).status == VersionStatus.PUBLISHED
    assert session.get(ConsentFormVersion, first.id).status == VersionStatus.SUPERSEDED

    # A published version cannot be edited any more.
    before = session.get(ConsentFormVersion, draft.id).title
    response = post_form(client, f"{version_url}/edit", {**VERSION_DATA, "title": "Changed!"})
    assert response.status_code == 303
    assert "A published version cannot change" in client.get(version_url).get_data(as_text=True)
    scope = services_scopes(session, draft.id)[0]
    assert (
        post_form(
            client,
            f"/staff/consent/scopes/{scope.id}/edit",
            {
                "code": scope.code,
                "title": "Changed",
                "explanation": "x",
                "kind": "purpose",
                "duo_code": "",
            },
        ).status_code
        == 303
    )
    assert (
        post_form(
            client,
            f"{version_url}/scopes",
            {
                "code": "LATE_ADDITION",
                "title": "Late",
                "explanation": "x",
                "kind": "purpose",
                "duo_code": "",
            },
        ).status_code
        == 400
    )
    assert post_form(client, f"{version_url}/publish", {"confirm": "y"}).status_code == 400
    session.expire_all()
    assert session.get(ConsentFormVersion, draft.id).title == before
    assert session.get(ConsentScope, scope.id).title == scope.title
    assert "LATE_ADDITION" not in [s.code for s in services_scopes(session, draft.id)]


def services_scopes(session, version_id):
    session.expire_all()
    return list(
        session.scalars(
            sa.select(ConsentScope)
            .where(ConsentScope.version_id == version_id)
            .order_by(ConsentScope.position)
        )
    )


HARD = (
    "Notwithstanding any provision hereinbefore contained, the data controller shall, subject "
    "to applicable statutory requirements, irrevocably anonymise personal information "
    "pertaining to the participant."
)


def test_publishing_a_hard_summary_needs_a_written_justification(client, session, staff, first):
    sign_in(client, staff)
    response = post_form(client, "/staff/consent/forms/new", {**VERSION_DATA, "summary": HARD})
    version_url = response.headers["Location"]
    page = client.get(version_url).get_data(as_text=True)
    assert "Above the limit:" in page
    refused = post_form(client, f"{version_url}/publish", {"confirm": "y"})
    assert refused.status_code == 400
    assert "above the limit of 8" in refused.get_data(as_text=True)
    accepted = post_form(
        client,
        f"{version_url}/publish",
        {"confirm": "y", "justification": "The ethics committee requires the legal wording."},
    )
    assert accepted.status_code == 303
    session.expire_all()
    version = session.scalar(sa.select(ConsentFormVersion).where(ConsentFormVersion.number == 2))
    assert version.status == VersionStatus.PUBLISHED and version.reading_grade > 8


def test_staff_record_a_paper_form_and_the_participant_gets_a_receipt(
    app, client, session, staff, first, make_user, mailbox
):
    person = make_user(Role.PARTICIPANT, email="paper@example.org")
    sign_in(client, staff)
    found = client.get("/staff/consent/forms", query_string={"email": "PAPER@example.org"})
    assert found.status_code == 302 and found.headers["Location"].endswith(
        f"/staff/consent/participants/{person.id}"
    )
    url = f"/staff/consent/participants/{person.id}"
    data = page_state(client, url)
    data["reference"] = "SCAN-2026-0042"
    for code in ALL_CODES:
        data[f"scope_{code}"] = "permit" if code in REQUIRED or code == "IMAGING_DATA" else "deny"
    response = post_form(client, url, data)
    assert response.status_code == 303
    events = events_of(session, person)
    assert len(events) == len(ALL_CODES)
    assert {(e.method.value, e.actor_id) for e in events} == {("paper", staff.id)}
    assert queries.permits(session, person.id, ["IMAGING_DATA"])
    message = mailbox.last_to("paper@example.org")
    assert message.subject == "Your paper consent form has been recorded"
    receipt_id = events[0].receipt_id
    assert message.link(f"/consent/receipts/{receipt_id}")
    participant_client = client.application.test_client()
    sign_in(participant_client, person)
    page = participant_client.get(f"/consent/receipts/{receipt_id}").get_data(as_text=True)
    assert "Paper form, recorded by coordination-centre staff" in page and "SCAN-2026-0042" in page
    # Recording the same page again is a stale page: refused.
    again = post_form(client, url, data)
    assert again.status_code == 409
    assert len(events_of(session, person)) == len(ALL_CODES)
    assert (
        client.get("/staff/consent/forms", query_string={"email": staff.email}).status_code == 200
    )


# Bounded work per page ---------------------------------------------------------------------------
@contextmanager
def counted_statements(app):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = Database.engine(app)
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_dashboard_issues_a_fixed_number_of_statements(app, client, session, staff, me):
    publish(session, staff, FIRST_SCOPES[:2])
    join_minimal = {"SHARE_RECORDS": True, "MS_RESEARCH": True}
    decide(app, session, me, join_minimal, review=True)
    with counted_statements(app) as small:
        assert client.get("/consent").status_code == 200

    publish(session, staff, [*FIRST_SCOPES, NEW_SCOPE])  # 9 scopes
    for n in range(6):
        decide(app, session, me, {code: n % 2 == 0 for code in (*OPTIONAL, "BIOBANK_SAMPLES")})
    decide(app, session, me, {code: True for code in REQUIRED})
    assert len(events_of(session, me)) > 40
    erasure = ErasureRequest(
        user_id=me.id,
        status=ErasureStatus.DECLINED,
        requested_at=events_of(session, me)[0].occurred_at,
        updated_at=events_of(session, me)[0].occurred_at,
        note="Kept for legal reasons.",
    )
    session.add(erasure)
    session.commit()
    with counted_statements(app) as large:
        page = client.get("/consent")
    assert page.status_code == 200 and "Kept for legal reasons." in page.get_data(as_text=True)
    assert len(large) == len(small), "\n".join(large)
    assert len(large) <= 14
    # The ledger is read once, for its newest event (the page's state token), never walked.
    ledger_reads = [s for s in large if "FROM consent_events" in s]
    assert len(ledger_reads) == 1 and "LIMIT" in ledger_reads[0]


def test_a_draft_in_a_language_without_a_grade_formula_says_it_is_not_measured(
    client, session, staff, first
):
    sign_in(client, staff)
    response = post_form(
        client,
        "/staff/consent/forms/new",
        {**VERSION_DATA, "language": "sv", "summary": "Vi ber dig dela dina uppgifter."},
    )
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Not measured: Engage has no reading-grade formula for this language" in page
    assert "Flesch-Kincaid" not in page
