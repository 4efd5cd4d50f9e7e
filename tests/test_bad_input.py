"""Hostile input to every form: never a 5xx, and nothing stored that should not be.

``FORMS`` lists every form of the app with data that *is* accepted (a test checks that), the
state that data changes, and which of its fields are text, choices or numbers. The tests
spoil that data one way at a time and check the answer is a 4xx and the state is unchanged.

Checks the app makes once for every form before a view runs any SQL (the CSRF token, reading
only ``request.form`` in the form base class, the body size limit, the method of a route) are
marked ``sqlite_only``: they refuse the same way on every database, and spoiling the valid data
any of them guards would change the state on SQLite too. What can reach the database (NUL,
unusual characters, long values, huge ids) runs on every backend.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from engage import delivery
from engage.accounts import email_change, two_factor
from engage.accounts import services as account_services
from engage.accounts.models import CustodianStatus, RecoveryCode, Role, User
from engage.audit import AuditEvent
from engage.consent import erasure as consent_erasure
from engage.consent import queries as consent_queries
from engage.consent import versions as consent_versions
from engage.consent.models import (
    ConsentChoice,
    ConsentEvent,
    ConsentFormVersion,
    ConsentScope,
    ErasureRequest,
)
from engage.consent.seed import FIRST_FORM
from engage.forms import NUL_MESSAGE
from engage.outbox import OutboxMessage
from engage.registries.models import Registry, RegistryEnrolment
from engage.security import make_token
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import (
    ContentReport,
    Topic,
    TopicCategory,
    TopicComment,
    TopicSettings,
    TopicStatus,
    TopicStatusChange,
    TopicSupport,
    TopicSupportEvent,
)
from governance import catalogue, chain, decisions, proposals
from governance.models import (
    AnalysisMode,
    ApiToken,
    CatalogueVariable,
    ConsentNotice,
    DecisionEvent,
    DecisionEventKind,
    DecisionThread,
    Proposal,
    ProposalScope,
    ProposalStatus,
    ProposalStatusChange,
    ProposalVariable,
    ThreadStatus,
)
from newsletters.models import (
    Campaign,
    CampaignList,
    CampaignStatus,
    CampaignStatusChange,
    ListVisibility,
    MailingList,
    Send,
    SendStatus,
    Subscriber,
    Subscription,
    Suppression,
    SuppressionReason,
)
from tests import consent_support
from tests.conftest import PASSWORD, csrf_token, next_totp_code, post_form, sign_in
from tests.governance.support import make_proposal
from tests.newsletters.support import make_campaign, make_list, subscribe_email

NEW_PASSWORD = "a long enough passphrase"
MAX_CONTENT_LENGTH = 1024 * 1024
TRY_AGAIN = "Please try again"
FORM_EXPIRED = "Your form expired or was sent from another page."
TOO_LARGE = "What you sent is too large."
ERROR_SUMMARY = "Please correct the following"
SCRIPT = '<script>alert("engage")</script>'
ATTRIBUTE_BREAKER = '"><img src=x onerror=alert(1)>'


@dataclass
class Kit:
    """What the form preparations need: the app, a client, a session and the factories."""

    app: Flask
    client: FlaskClient
    session: sa.orm.Session
    make_user: Callable[..., User]
    make_registry: Callable[..., Registry]
    as_role: Callable[..., User]
    mailbox: Any

    def fresh(self, model: type, row_id: int) -> Any:
        """The row as the database has it now."""
        self.session.expire_all()
        return self.session.get(model, row_id)

    def count(self, query: sa.Select) -> int:
        """``SELECT count(*)`` of ``query``'s rows."""
        self.session.expire_all()
        return self.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))

    def audit_count(self, action: str) -> int:
        """How many audit events of ``action`` there are."""
        return self.count(sa.select(AuditEvent.id).where(AuditEvent.action == action))

    def token(self, purpose: str, payload: dict[str, Any]) -> str:
        """A correctly signed token, as an emailed link would carry."""
        with self.app.app_context():
            return make_token(purpose, payload)


@pytest.fixture
def kit(app, client, session, make_user, make_registry, as_role, mailbox) -> Kit:
    """The app, a client, a session and the factories, in one object."""
    return Kit(app, client, session, make_user, make_registry, as_role, mailbox)


@dataclass
class Prepared:
    """One form, ready to post: where, data that is accepted, and what that data changes."""

    url: str
    data: dict[str, Any]
    state: Callable[[], Any]
    # The answer to an accepted post: a status, or "→ <path>" for a redirect.
    success: int | str
    # How the form refuses when it is one part of a bigger page (see FlashedRefusal); None
    # for a form that answers a refusal with itself and a 400.
    flashed: FlashedRefusal | None = None
    # How a row's button whose only field is hidden refuses (see AlertRefusal).
    alert: AlertRefusal | None = None


@dataclass
class FlashedRefusal:
    """A form on a bigger page (a topic's comment box, staff moderation) refuses input with a
    303 back to that page, which shows the error as a flashed alert."""

    message: str  # how the flashed error begins
    client: FlaskClient  # the client that posted, to read the page the redirect leads to

    def page_after(self, response: Any) -> str:
        """The page a 303 ``response`` leads to."""
        assert response.status_code == 303, response.status_code
        page = self.client.get(response.headers["Location"])
        assert page.status_code == 200, page.status_code
        return page.get_data(as_text=True)

    def shown_in(self, page: str) -> bool:
        """True when ``page`` shows the refusal as an error notice that is announced."""
        pattern = r'notice-error" data-announce>\s*<p>' + re.escape(str(escape(self.message)))
        return re.search(pattern, page) is not None


@dataclass(frozen=True)
class AlertRefusal:
    """A button on one row of a list page (staff lifting a suppression) carries only a hidden
    field naming its row: a refusal is the page again with an alert saying why in place of an
    error summary (nobody typed the value), a 400, or a 404 when the value names no row."""

    statuses: tuple[int, ...] = (400, 404)

    def shown_in(self, page: str) -> bool:
        """True when ``page`` shows an error notice (announced, or an alert)."""
        notice = r'notice-error"[^>]*(?:role="alert"|data-announce)>\s*<p>'
        return re.search(notice, page) is not None


USER_COLUMNS = (
    "email",
    "display_name",
    "role",
    "country",
    "language",
    "profession",
    "institution",
    "organisation_name",
    "password_hash",
    "is_active",
    "session_version",
    "clinician_verified_at",
    "custodian_status",
    "custodian_registry_id",
)


def _user_state(kit: Kit, user_id: int) -> dict[str, Any]:
    user = kit.fresh(User, user_id)
    return {name: getattr(user, name) for name in USER_COLUMNS}


def _registries_state(kit: Kit) -> list[tuple]:
    kit.session.expire_all()
    return [
        tuple(row)
        for row in kit.session.execute(
            sa.select(
                Registry.id, Registry.code, Registry.name, Registry.country, Registry.is_active
            ).order_by(Registry.id)
        )
    ]


# Every form of the app --------------------------------------------------------------------
def _sign_up(kit: Kit) -> Prepared:
    registry = kit.make_registry(code="SMSREG", name="Swedish MS registry")
    # A custodian sign-up, so that the registry number is checked too.
    data = {
        "role": "custodian",
        "display_name": "Sam",
        "email": "sam@example.org",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        "country": "SE",
        "language": "sv",
        "registry": str(registry.id),
        "profession": "Data manager",
        "institution": "Karolinska",
        "organisation_name": "",
    }
    return Prepared(
        "/sign-up", data, lambda: kit.count(sa.select(User.id)), "→ /sign-up/check-email"
    )


def _sign_in(kit: Kit) -> Prepared:
    user = kit.make_user(Role.PARTICIPANT)
    return Prepared(
        "/sign-in",
        {"email": user.email, "password": PASSWORD},
        lambda: kit.audit_count("sign_in"),
        "→ /",
    )


def _request_reset(kit: Kit) -> Prepared:
    user = kit.make_user(Role.PARTICIPANT)
    return Prepared(
        "/reset-password",
        {"email": user.email},
        lambda: (len(kit.mailbox.messages), kit.audit_count("password_reset_requested")),
        200,
    )


def _reset_password(kit: Kit) -> Prepared:
    user = kit.make_user(Role.PARTICIPANT)
    token = kit.token("reset-password", account_services.reset_payload(user))
    return Prepared(
        f"/reset-password/{token}",
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        lambda: _user_state(kit, user.id),
        "→ /sign-in",
    )


def _verify_email(kit: Kit) -> Prepared:
    user = kit.make_user(Role.PARTICIPANT, email_verified=False)
    token = kit.token("verify-email", account_services.verification_payload(user))
    return Prepared(
        f"/verify-email/{token}",
        {"password": PASSWORD},
        lambda: kit.fresh(User, user.id).email_verified_at,
        "→ /",
    )


def _change_email(kit: Kit) -> Prepared:
    user = kit.as_role(Role.PARTICIPANT)
    return Prepared(
        "/account/email",
        {"email": "new.address@example.org"},
        lambda: kit.fresh(User, user.id).pending_email,
        "→ /account",
    )


def _confirm_email_change(kit: Kit) -> Prepared:
    user = kit.session.get(User, kit.make_user(Role.PARTICIPANT).id)
    user.pending_email = "new.address@example.org"
    kit.session.commit()
    token = kit.token(email_change.TOKEN_PURPOSE, email_change.change_payload(user))
    return Prepared(
        f"/confirm-new-email/{token}",
        {"password": PASSWORD},
        lambda: (kit.fresh(User, user.id).email, kit.fresh(User, user.id).pending_email),
        "→ /sign-in",
    )


def _profile_clinician(kit: Kit) -> Prepared:
    user = kit.as_role(Role.CLINICIAN, clinician_verified=True)
    data = {
        "display_name": "Dr Sam",
        "country": "DK",
        "language": "da",
        "profession": "MS nurse",
        "institution": "Rigshospitalet",
    }
    return Prepared("/account", data, lambda: _user_state(kit, user.id), "→ /account")


def _profile_organisation(kit: Kit) -> Prepared:
    user = kit.as_role(Role.ORGANISATION)
    data = {
        "display_name": "Sam",
        "country": "SE",
        "language": "en",
        "organisation_name": "MS Society of Sweden",
    }
    return Prepared("/account", data, lambda: _user_state(kit, user.id), "→ /account")


def _change_password(kit: Kit) -> Prepared:
    user = kit.as_role(Role.PARTICIPANT)
    data = {
        "current_password": PASSWORD,
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
    }
    return Prepared("/account/password", data, lambda: _user_state(kit, user.id), "→ /account")


def _enrolment(kit: Kit) -> Prepared:
    registry = kit.make_registry()
    user = kit.as_role(Role.PARTICIPANT)
    query = sa.select(RegistryEnrolment.registry_id).where(RegistryEnrolment.user_id == user.id)
    return Prepared(
        "/account/registries",
        {"registries": str(registry.id)},
        lambda: kit.count(query),
        "→ /account",
    )


def _live_sessions(kit: Kit, user_id: int) -> list[int]:
    from engage.accounts.models import UserSession

    kit.session.expire_all()
    query = sa.select(UserSession.id).where(
        UserSession.user_id == user_id, UserSession.ended_at.is_(None)
    )
    return list(kit.session.scalars(query.order_by(UserSession.id)))


def _signed_in_twice(kit: Kit) -> tuple[User, int]:
    """A participant signed in on another browser first, then on the kit's client; returns the
    account and the other browser's session number."""
    user = kit.make_user(Role.PARTICIPANT)
    sign_in(kit.app.test_client(), user)
    sign_in(kit.client, user)
    return user, _live_sessions(kit, user.id)[0]


def _end_session(kit: Kit) -> Prepared:
    user, other_session = _signed_in_twice(kit)
    return Prepared(
        "/account/sessions/sign-out",
        {"session_id": str(other_session)},
        lambda: _live_sessions(kit, user.id),
        "→ /account/sessions",
        alert=AlertRefusal(),
    )


def _end_other_sessions(kit: Kit) -> Prepared:
    user, _other_session = _signed_in_twice(kit)
    return Prepared(
        "/account/sessions/sign-out-all",
        {"which": "others"},
        lambda: _live_sessions(kit, user.id),
        "→ /account/sessions",
        alert=AlertRefusal(),
    )


def _staff_target(
    kit: Kit, role: Role, path: str, data: dict[str, str], **options: Any
) -> Prepared:
    target = kit.make_user(role, **options)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"/staff/users/{target.id}/{path}",
        data,
        lambda: _user_state(kit, target.id),
        f"→ /staff/users/{target.id}",
    )


def _verify_clinician(kit: Kit) -> Prepared:
    return _staff_target(kit, Role.CLINICIAN, "clinician", {"verified": "yes"})


def _decide_custodian(kit: Kit) -> Prepared:
    other_registry = kit.make_registry()
    return _staff_target(
        kit,
        Role.CUSTODIAN,
        "custodian",
        {"decision": "approve", "registry": str(other_registry.id), "reason": ""},
        custodian_status=CustodianStatus.PENDING,
    )


def _change_role(kit: Kit) -> Prepared:
    return _staff_target(kit, Role.PARTICIPANT, "role", {"role": "organisation"})


def _set_active(kit: Kit) -> Prepared:
    return _staff_target(kit, Role.PARTICIPANT, "active", {"active": "no"})


def _new_registry(kit: Kit) -> Prepared:
    kit.as_role(Role.STAFF)
    data = {"code": "NEWREG", "name": "New registry", "country": "DK", "is_active": "y"}
    return Prepared(
        "/staff/registries/new", data, lambda: _registries_state(kit), "→ /staff/registries"
    )


def _edit_registry(kit: Kit) -> Prepared:
    registry = kit.make_registry(code="SMSREG", name="Swedish MS registry")
    kit.as_role(Role.STAFF)
    data = {"code": "SMSREG2", "name": "Renamed registry", "country": "INT", "is_active": "y"}
    return Prepared(
        f"/staff/registries/{registry.id}/edit",
        data,
        lambda: _registries_state(kit),
        "→ /staff/registries",
    )


@dataclass(frozen=True)
class FormSpec:
    """A form of the app and the kinds of its fields."""

    prepare: Callable[[Kit], Prepared]
    text_fields: tuple[str, ...] = ()
    choice_fields: tuple[str, ...] = ()
    number_fields: tuple[str, ...] = ()
    # Date and time fields (``datetime-local`` inputs).
    date_fields: tuple[str, ...] = ()
    # False for a form whose every field is optional (a note): an empty post is accepted, so
    # the checks that a body which is no HTML form changes nothing do not apply.
    refuses_empty: bool = True


FORMS: dict[str, FormSpec] = {
    "sign-up": FormSpec(
        _sign_up,
        (
            "display_name",
            "email",
            "password",
            "password_confirm",
            "profession",
            "institution",
            "organisation_name",
        ),
        ("role", "country", "language"),
        ("registry",),
    ),
    "sign-in": FormSpec(_sign_in, ("email", "password")),
    "reset request": FormSpec(_request_reset, ("email",)),
    "reset with token": FormSpec(_reset_password, ("password", "password_confirm")),
    "verify email with token": FormSpec(_verify_email, ("password",)),
    "change email": FormSpec(_change_email, ("email",)),
    "confirm email change with token": FormSpec(_confirm_email_change, ("password",)),
    "profile (clinician)": FormSpec(
        _profile_clinician,
        ("display_name", "profession", "institution"),
        ("country", "language"),
    ),
    "profile (organisation)": FormSpec(
        _profile_organisation, ("display_name", "organisation_name"), ("country", "language")
    ),
    "change password": FormSpec(
        _change_password, ("current_password", "password", "password_confirm")
    ),
    "registries enrolment": FormSpec(_enrolment, number_fields=("registries",)),
    "signed-in devices: sign out one": FormSpec(_end_session, number_fields=("session_id",)),
    "signed-in devices: sign out the others": FormSpec(
        _end_other_sessions, choice_fields=("which",)
    ),
    "staff: clinician verification": FormSpec(_verify_clinician, choice_fields=("verified",)),
    "staff: custodian decision": FormSpec(
        _decide_custodian, ("reason",), ("decision",), ("registry",)
    ),
    "staff: role": FormSpec(_change_role, choice_fields=("role",)),
    "staff: active flag": FormSpec(_set_active, choice_fields=("active",)),
    "staff: new registry": FormSpec(_new_registry, ("code", "name"), ("country",)),
    "staff: edit registry": FormSpec(_edit_registry, ("code", "name"), ("country",)),
}


# Topic forms ----------------------------------------------------------------------------------
TOPIC_DATA = {
    "title": "Does swimming ease MS fatigue?",
    "question": "Does swimming twice a week ease fatigue in people with MS?",
    "rationale": "Many of us swim; *nobody* knows whether it helps.",
    "category": "lifestyle",
    "reference_links": "https://example.org/swimming\nhttps://example.org/fatigue",
}
# Staff moves that bring a new topic to each status (withdrawing is the author's own move).
TOPIC_STEPS = {
    TopicStatus.SUBMITTED: [],
    TopicStatus.WITHDRAWN: [],
    TopicStatus.PUBLISHED: [TopicStatus.PUBLISHED],
    TopicStatus.SHORTLISTED: [TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED],
    TopicStatus.ADOPTED: [TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED, TopicStatus.ADOPTED],
    TopicStatus.RETURNED: [TopicStatus.RETURNED],
    TopicStatus.REJECTED: [TopicStatus.REJECTED],
}


class NewTopicPage(str):
    """The landing of an accepted proposal: "→ /topics/<n>" for whatever number it got."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and re.fullmatch(r"→ /topics/\d+", other) is not None

    __hash__ = str.__hash__


def _make_topic(
    kit: Kit,
    status: TopicStatus = TopicStatus.PUBLISHED,
    *,
    title: str | None = None,
    author_id: int | None = None,
    staff_id: int | None = None,
) -> int:
    """Create a topic (by a new participant unless ``author_id``), bring it to ``status``, and
    return its number."""
    session = kit.session
    author = session.get(User, author_id or kit.make_user(Role.PARTICIPANT).id)
    staff = session.get(User, staff_id or kit.make_user(Role.STAFF).id)
    details = topic_services.TopicDetails(
        title=title or f"Existing topic {kit.count(sa.select(Topic.id)) + 1}",
        question="An existing research question?",
        rationale="Because it matters.",
        category=TopicCategory.CARE,
    )
    topic = topic_services.propose_topic(session, author, details, utcnow(), max_pending=100)
    if status == TopicStatus.WITHDRAWN:
        topic_services.withdraw_topic(session, author, topic, utcnow())
    for step in TOPIC_STEPS[status]:
        topic_services.change_status(session, staff, topic, step, utcnow(), reason="Staff say so.")
    session.commit()
    return topic.id


def _make_comment(kit: Kit, topic_id: int, author_id: int | None = None) -> int:
    """Add a comment (by a new participant unless ``author_id``) and return its number."""
    session = kit.session
    author = session.get(User, author_id or kit.make_user(Role.PARTICIPANT).id)
    topic = session.get(Topic, topic_id)
    comment = topic_services.add_comment(session, author, topic, "A comment.", utcnow())
    session.commit()
    return comment.id


def _topics_state(kit: Kit) -> dict[str, list[tuple]]:
    """Every topic table, row by row: what a refused post must leave as it was."""
    kit.session.expire_all()

    def rows(*columns: Any) -> list[tuple]:
        query = sa.select(*columns).order_by(*columns[:2])
        return [tuple(row) for row in kit.session.execute(query)]

    return {
        "topics": rows(
            Topic.id,
            Topic.title,
            Topic.question,
            Topic.rationale,
            Topic.category,
            Topic.status,
            Topic.reference_links,
            Topic.support_count,
            Topic.merged_into_id,
            Topic.proposal_reference,
            Topic.is_hidden,
        ),
        "status changes": rows(
            TopicStatusChange.id, TopicStatusChange.to_status, TopicStatusChange.reason
        ),
        "supports": rows(TopicSupport.topic_id, TopicSupport.user_id),
        "support events": rows(TopicSupportEvent.id, TopicSupportEvent.action),
        "comments": rows(TopicComment.id, TopicComment.body, TopicComment.is_hidden),
        "reports": rows(ContentReport.id, ContentReport.reason, ContentReport.status),
        "settings": rows(TopicSettings.id, TopicSettings.support_budget),
        "notifications": rows(OutboxMessage.id, OutboxMessage.kind),
    }


def _propose_topic(kit: Kit) -> Prepared:
    kit.as_role(Role.PARTICIPANT)
    return Prepared(
        "/topics/new",
        dict(TOPIC_DATA),
        lambda: _topics_state(kit),
        NewTopicPage("→ /topics/<the new topic>"),
    )


def _edit_returned_topic(kit: Kit) -> Prepared:
    author = kit.as_role(Role.PARTICIPANT)
    topic_id = _make_topic(kit, TopicStatus.RETURNED, author_id=author.id)
    return Prepared(
        f"/topics/{topic_id}/edit",
        dict(TOPIC_DATA),
        lambda: _topics_state(kit),
        f"→ /topics/{topic_id}",
    )


def _comment(kit: Kit) -> Prepared:
    topic_id = _make_topic(kit)
    kit.as_role(Role.CLINICIAN)
    return Prepared(
        f"/topics/{topic_id}/comments",
        {"body": "I see this in *my* clinic."},
        lambda: _topics_state(kit),
        f"→ /topics/{topic_id}",
        FlashedRefusal("Your comment was not posted", kit.client),
    )


def _edit_comment(kit: Kit) -> Prepared:
    topic_id = _make_topic(kit)
    writer = kit.as_role(Role.PARTICIPANT)
    comment_id = _make_comment(kit, topic_id, writer.id)
    return Prepared(
        f"/topics/comments/{comment_id}/edit",
        {"body": "Edited: I see this **often**."},
        lambda: _topics_state(kit),
        f"→ /topics/{topic_id}",
    )


def _report_topic(kit: Kit) -> Prepared:
    topic_id = _make_topic(kit)
    kit.as_role(Role.PARTICIPANT)
    return Prepared(
        f"/topics/{topic_id}/report",
        {"reason": "This is advertising."},
        lambda: _topics_state(kit),
        f"→ /topics/{topic_id}",
        FlashedRefusal("Your report was not sent", kit.client),
    )


def _report_comment(kit: Kit) -> Prepared:
    topic_id = _make_topic(kit)
    comment_id = _make_comment(kit, topic_id)
    kit.as_role(Role.ORGANISATION)
    return Prepared(
        f"/topics/comments/{comment_id}/report",
        {"reason": "Rude to other people."},
        lambda: _topics_state(kit),
        f"→ /topics/{topic_id}",
        FlashedRefusal("Your report was not sent", kit.client),
    )


def _moderate(kit: Kit) -> Prepared:
    topic_id = _make_topic(kit, TopicStatus.SHORTLISTED)
    kit.as_role(Role.STAFF)
    data = {
        "status": "adopted",
        "reason": "Chosen by the steering group.",
        "proposal_reference": "GP-2024-07",
    }
    return Prepared(
        f"/topics/{topic_id}/moderate",
        data,
        lambda: _topics_state(kit),
        f"→ /topics/{topic_id}",
        FlashedRefusal("Not saved:", kit.client),
    )


def _merge(kit: Kit) -> Prepared:
    source_id, target_id = _make_topic(kit), _make_topic(kit)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"/topics/{source_id}/merge",
        {"target_id": str(target_id), "reason": "They ask the same question."},
        lambda: _topics_state(kit),
        f"→ /topics/{target_id}",
        FlashedRefusal("Not merged:", kit.client),
    )


def _resolve_reports(kit: Kit) -> Prepared:
    topic_id = _make_topic(kit)
    comment_id = _make_comment(kit, topic_id)
    session = kit.session
    topic_services.report_content(
        session,
        session.get(User, kit.make_user(Role.CLINICIAN).id),
        session.get(Topic, topic_id),
        session.get(TopicComment, comment_id),
        "Rude.",
        utcnow(),
        hide_threshold=1,
    )
    session.commit()
    kit.as_role(Role.STAFF)
    return Prepared(
        f"/topics/{topic_id}/reports",
        {"comment_id": str(comment_id), "decision": "dismiss"},
        lambda: _topics_state(kit),
        "→ /topics/moderation",
        FlashedRefusal("Not saved: choose a decision.", kit.client),
    )


def _support_budget(kit: Kit) -> Prepared:
    staff = kit.as_role(Role.STAFF)
    topic_services.set_support_budget(kit.session, kit.session.get(User, staff.id), 5, utcnow())
    kit.session.commit()
    return Prepared(
        "/topics/settings",
        {"budget": "3"},
        lambda: _topics_state(kit),
        "→ /topics/moderation",
        FlashedRefusal("Not saved:", kit.client),
    )


TOPIC_TEXT = ("title", "question", "rationale", "reference_links")
FORMS.update(
    {
        "topics: propose": FormSpec(_propose_topic, TOPIC_TEXT, ("category",)),
        "topics: edit returned topic": FormSpec(_edit_returned_topic, TOPIC_TEXT, ("category",)),
        "topics: comment": FormSpec(_comment, ("body",)),
        "topics: edit comment": FormSpec(_edit_comment, ("body",)),
        "topics: report topic": FormSpec(_report_topic, ("reason",)),
        "topics: report comment": FormSpec(_report_comment, ("reason",)),
        "topics: staff moderate": FormSpec(
            _moderate, ("reason", "proposal_reference"), ("status",)
        ),
        "topics: staff merge": FormSpec(_merge, ("reason",), number_fields=("target_id",)),
        "topics: staff resolve reports": FormSpec(_resolve_reports, choice_fields=("decision",)),
        "topics: support budget": FormSpec(_support_budget, number_fields=("budget",)),
    }
)


# Consent forms ----------------------------------------------------------------------------------
def _consent_state(kit: Kit) -> dict[str, list[tuple]]:
    """Every consent table, row by row: what a refused post must leave as it was."""
    kit.session.expire_all()

    def rows(*columns: Any) -> list[tuple]:
        query = sa.select(*columns).order_by(*columns[:2])
        return [tuple(row) for row in kit.session.execute(query)]

    return {
        "versions": rows(
            ConsentFormVersion.id,
            ConsentFormVersion.status,
            ConsentFormVersion.title,
            ConsentFormVersion.summary,
            ConsentFormVersion.body,
            ConsentFormVersion.ethics_reference,
            ConsentFormVersion.language,
            ConsentFormVersion.grade_justification,
        ),
        "scopes": rows(
            ConsentScope.id,
            ConsentScope.code,
            ConsentScope.title,
            ConsentScope.explanation,
            ConsentScope.kind,
            ConsentScope.duo_code,
            ConsentScope.is_required,
        ),
        "events": rows(ConsentEvent.id, ConsentEvent.hash, ConsentEvent.decision),
        "choices": rows(ConsentChoice.user_id, ConsentChoice.scope_code, ConsentChoice.decision),
        "erasure requests": rows(ErasureRequest.id, ErasureRequest.status, ErasureRequest.note),
    }


def _consent_form(kit: Kit) -> ConsentFormVersion:
    """The seed consent form, published by a staff member made for it."""
    return consent_support.publish(kit.session, kit.make_user(Role.STAFF))


def _joined_participant(kit: Kit, **allow: bool) -> User:
    """A participant signed in on ``kit.client`` who has reviewed the whole form."""
    _consent_form(kit)
    person = kit.as_role(Role.PARTICIPANT)
    consent_support.join(kit.app, kit.session, person, **allow)
    return person


def _consent_page_state(kit: Kit, url: str = "/consent") -> dict[str, str]:
    page = kit.client.get(url).get_data(as_text=True)
    return {
        "version_id": consent_support.VERSION_FIELD.search(page).group(1),
        "state": consent_support.STATE_FIELD.search(page).group(1),
    }


def _consent_choice(kit: Kit) -> Prepared:
    _joined_participant(kit)
    data = {**_consent_page_state(kit), "scope": "GENOMIC_DATA", "decision": "permit"}
    return Prepared("/consent/choice", data, lambda: _consent_state(kit), "→ /consent")


def _consent_withdraw_optional(kit: Kit) -> Prepared:
    _joined_participant(kit, GENOMIC_DATA=True, SURVEY_RECONTACT=True)
    return Prepared(
        "/consent/withdraw-optional",
        _consent_page_state(kit),
        lambda: _consent_state(kit),
        "→ /consent",
    )


def _consent_leave(kit: Kit) -> Prepared:
    _joined_participant(kit)
    data = {**_consent_page_state(kit, "/consent/leave"), "option": "erase"}
    # The confirmation's button: choosing the option alone changes nothing.
    return Prepared("/consent/leave/confirm", data, lambda: _consent_state(kit), "→ /consent")


def _consent_review(kit: Kit) -> Prepared:
    _joined_participant(kit)
    data = _consent_page_state(kit, "/consent/review")
    for code in consent_support.ALL_CODES:
        allowed = code in consent_support.REQUIRED or code == "IMAGING_DATA"
        data[f"scope_{code}"] = "permit" if allowed else "deny"
    return Prepared("/consent/review", data, lambda: _consent_state(kit), "→ /consent")


def _consent_paper_form(kit: Kit) -> Prepared:
    _consent_form(kit)
    person = kit.make_user(Role.PARTICIPANT)
    kit.as_role(Role.STAFF)
    url = f"/staff/consent/participants/{person.id}"
    data = {**_consent_page_state(kit, url), "reference": "SCAN-2026-0042"}
    for code in consent_support.ALL_CODES:
        data[f"scope_{code}"] = "permit" if code in consent_support.REQUIRED else "deny"
    return Prepared(url, data, lambda: _consent_state(kit), f"→ {url}")


CONSENT_VERSION_DATA = {
    "title": "Taking part in MS research, second edition",
    "summary": "We ask you to share your records. You can say no to any choice.",
    "body": "## Why we ask\n\nResearch needs many people's records.",
    "ethics_reference": "EC-2027-003",
    "language": "en",
}


class NewVersionPage(str):
    """The landing of a created draft: "→ /staff/consent/forms/<n>" for whatever id it got."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        pattern = r"→ /staff/consent/forms/\d+"
        return isinstance(other, str) and re.fullmatch(pattern, other) is not None

    __hash__ = str.__hash__


def _consent_new_version(kit: Kit) -> Prepared:
    _consent_form(kit)
    kit.as_role(Role.STAFF)
    return Prepared(
        "/staff/consent/forms/new",
        dict(CONSENT_VERSION_DATA),
        lambda: _consent_state(kit),
        NewVersionPage("→ /staff/consent/forms/<the draft>"),
    )


def _consent_draft(kit: Kit) -> ConsentFormVersion:
    """A draft version (with the seed form's scopes) after the published seed form."""
    staff = kit.make_user(Role.STAFF)
    consent_support.publish(kit.session, staff)
    draft = consent_versions.create_draft(
        kit.session, kit.session.get(User, staff.id), FIRST_FORM, utcnow()
    )
    kit.session.commit()
    kit.as_role(Role.STAFF)
    return draft


def _consent_edit_version(kit: Kit) -> Prepared:
    draft = _consent_draft(kit)
    url = f"/staff/consent/forms/{draft.id}"
    return Prepared(
        f"{url}/edit", dict(CONSENT_VERSION_DATA), lambda: _consent_state(kit), f"→ {url}"
    )


CONSENT_SCOPE_DATA = {
    "code": "BIOBANK_SAMPLES",
    "title": "Use my stored blood samples",
    "explanation": "Samples your clinic stores may be tested in approved projects.",
    "kind": "data_category",
    "duo_code": "HMB",
    "is_required": "",
}


def _consent_add_scope(kit: Kit) -> Prepared:
    draft = _consent_draft(kit)
    url = f"/staff/consent/forms/{draft.id}"
    return Prepared(
        f"{url}/scopes", dict(CONSENT_SCOPE_DATA), lambda: _consent_state(kit), f"→ {url}"
    )


def _consent_draft_scope(kit: Kit, code: str = "GENOMIC_DATA") -> tuple[int, ConsentScope]:
    draft = _consent_draft(kit)
    scope = next(s for s in consent_queries.scopes_of(kit.session, draft.id) if s.code == code)
    return draft.id, scope


def _consent_edit_scope(kit: Kit) -> Prepared:
    draft_id, scope = _consent_draft_scope(kit)
    data = {**CONSENT_SCOPE_DATA, "code": scope.code, "title": "Include my genomic data (DNA)"}
    return Prepared(
        f"/staff/consent/scopes/{scope.id}/edit",
        data,
        lambda: _consent_state(kit),
        f"→ /staff/consent/forms/{draft_id}",
    )


def _consent_remove_scope(kit: Kit) -> Prepared:
    draft_id, scope = _consent_draft_scope(kit)
    return Prepared(
        f"/staff/consent/scopes/{scope.id}/remove",
        {"code": scope.code},
        lambda: _consent_state(kit),
        f"→ /staff/consent/forms/{draft_id}",
    )


def _consent_publish(kit: Kit) -> Prepared:
    draft = _consent_draft(kit)
    url = f"/staff/consent/forms/{draft.id}"
    return Prepared(
        f"{url}/publish",
        {"confirm": "y", "justification": "Unchanged wording approved by the ethics committee."},
        lambda: _consent_state(kit),
        f"→ {url}",
    )


def _consent_erasure_status(kit: Kit) -> Prepared:
    _consent_form(kit)
    person = kit.make_user(Role.PARTICIPANT)
    consent_support.join(kit.app, kit.session, person)
    consent_erasure.request_erasure(kit.session, kit.session.get(User, person.id), utcnow())
    kit.session.commit()
    request_id = kit.session.scalar(sa.select(ErasureRequest.id))
    kit.as_role(Role.STAFF)
    return Prepared(
        f"/staff/consent/erasure/{request_id}",
        {"status": "in_progress", "note": "Asked the six registries."},
        lambda: _consent_state(kit),
        "→ /staff/consent/erasure",
    )


CONSENT_VERSION_TEXT = ("title", "summary", "ethics_reference")  # the full text: see below
CONSENT_SCOPE_TEXT = ("code", "title", "explanation")
FORMS.update(
    {
        "consent: one choice": FormSpec(
            _consent_choice, (), ("scope", "decision"), ("version_id",)
        ),
        "consent: withdraw everything optional": FormSpec(
            _consent_withdraw_optional, number_fields=("version_id",)
        ),
        "consent: leave the programme": FormSpec(_consent_leave, (), ("option",), ("version_id",)),
        "consent: review the form": FormSpec(
            _consent_review, (), ("scope_SHARE_RECORDS", "scope_GENOMIC_DATA"), ("version_id",)
        ),
        "consent: staff paper form": FormSpec(
            _consent_paper_form, ("reference",), ("scope_TRIAL_CONTACT",), ("version_id",)
        ),
        "consent: staff new version": FormSpec(
            _consent_new_version, CONSENT_VERSION_TEXT, ("language",)
        ),
        "consent: staff edit version": FormSpec(
            _consent_edit_version, CONSENT_VERSION_TEXT, ("language",)
        ),
        "consent: staff add scope": FormSpec(_consent_add_scope, CONSENT_SCOPE_TEXT, ("kind",)),
        "consent: staff edit scope": FormSpec(_consent_edit_scope, CONSENT_SCOPE_TEXT, ("kind",)),
        "consent: staff remove scope": FormSpec(_consent_remove_scope, choice_fields=("code",)),
        "consent: staff publish": FormSpec(_consent_publish, ("justification",)),
        "consent: staff erasure status": FormSpec(_consent_erasure_status, ("note",), ("status",)),
    }
)


# Governance forms ---------------------------------------------------------------------------------
GOVERNANCE_SCOPE = "MS_RESEARCH"  # a required scope of the seed consent form
GOVERNANCE_VARIABLES = (
    ("EDSS", "EDSS score", "Disability"),
    ("DMT_EXPOSURE", "DMT exposure", "Treatment"),
)
STAFF_GOVERNANCE = "/staff/governance"


class NumberedPage(str):
    """The landing of a post that creates a row: "→ /path/<n>" for whatever number it got."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        pattern = re.escape(str(self)).replace("<n>", r"\d+")
        return isinstance(other, str) and re.fullmatch(pattern, other) is not None

    __hash__ = str.__hash__


def _governance_state(kit: Kit) -> dict[str, list[tuple]]:
    """Every governance table, row by row, and governance's audit trail: what a refused post
    must leave as it was."""
    kit.session.expire_all()

    def rows(*columns: Any) -> list[tuple]:
        query = sa.select(*columns).order_by(*columns[:2])
        return [tuple(row) for row in kit.session.execute(query)]

    audit = sa.select(AuditEvent.id, AuditEvent.action).where(
        AuditEvent.action.like("governance_%")
    )
    return {
        "proposals": rows(
            Proposal.id,
            Proposal.status,
            Proposal.title,
            Proposal.lead_researcher,
            Proposal.institution,
            Proposal.sponsor,
            Proposal.plain_summary,
            Proposal.scientific_summary,
            Proposal.language,
            Proposal.analysis_mode,
            Proposal.ethics_reference,
            Proposal.topic_id,
            Proposal.decision_deadline,
        ),
        "scopes": rows(ProposalScope.proposal_id, ProposalScope.scope_code),
        "requested variables": rows(ProposalVariable.proposal_id, ProposalVariable.variable_id),
        "status changes": rows(
            ProposalStatusChange.id, ProposalStatusChange.to_status, ProposalStatusChange.reason
        ),
        "threads": rows(
            DecisionThread.id,
            DecisionThread.status,
            DecisionThread.deadline,
            DecisionThread.paused_since,
            DecisionThread.conditions,
        ),
        "decision events": rows(DecisionEvent.id, DecisionEvent.kind, DecisionEvent.text),
        "notices": rows(ConsentNotice.id, ConsentNotice.acknowledged_at),
        "catalogue": rows(
            CatalogueVariable.id,
            CatalogueVariable.code,
            CatalogueVariable.name,
            CatalogueVariable.domain,
            CatalogueVariable.description,
            CatalogueVariable.is_active,
        ),
        "tokens": rows(ApiToken.id, ApiToken.name, ApiToken.revoked_at),
        "audit": [tuple(row) for row in kit.session.execute(audit.order_by(AuditEvent.id))],
        "notifications": rows(OutboxMessage.id, OutboxMessage.kind),
    }


def _governance_world(kit: Kit) -> dict[str, int]:
    """The published seed consent form and two catalogue variables; their ids by code."""
    _consent_form(kit)
    staff = kit.session.get(User, kit.make_user(Role.STAFF).id)
    made = {
        code: catalogue.add_variable(
            kit.session, staff, catalogue.VariableDetails(code, name, domain, f"{name}."), utcnow()
        )
        for code, name, domain in GOVERNANCE_VARIABLES
    }
    kit.session.commit()
    return {code: variable.id for code, variable in made.items()}


def _deadline_text(days: float = 30) -> str:
    """A deadline as a ``datetime-local`` input sends it."""
    return (utcnow() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def _proposal_data(variable_id: int, **changes: str) -> dict[str, str]:
    """A proposal's details as the editor posts them."""
    return {
        "title": "Fatigue and DMT exposure",
        "lead_researcher": "Dr Ana Lind",
        "institution": "Karolinska Institutet",
        "sponsor": "MS Society",
        "plain_summary": "We want to learn why people with MS feel tired.",
        "language": "en",
        "scientific_summary": "A retrospective cohort study.",
        "analysis_mode": "federated",
        "ethics_reference": "EPN 2026-0001",
        "topic_id": "",
        "decision_deadline": _deadline_text(),
        "scope_codes": GOVERNANCE_SCOPE,
        "variable_ids": str(variable_id),
        **changes,
    }


def _draft(kit: Kit, author_id: int, variable_id: int) -> Proposal:
    """A draft by ``author_id`` made with the service; commits."""
    details = proposals.ProposalDetails(
        title="Vitamin D and relapses",
        lead_researcher="Dr A",
        institution="KI",
        sponsor="Network",
        plain_summary="Does vitamin D help?",
        scientific_summary="A cohort study.",
        language="en",
        analysis_mode=AnalysisMode.POOLED,
        ethics_reference="EC-1",
        topic_id=None,
        decision_deadline=utcnow() + timedelta(days=30),
        scope_codes=[GOVERNANCE_SCOPE],
        variable_ids=[variable_id],
    )
    proposal = proposals.create_draft(
        kit.session, kit.session.get(User, author_id), details, utcnow()
    )
    kit.session.commit()
    return proposal


def _staff_proposal(kit: Kit, *steps: str, registries: tuple[Registry, ...] = ()) -> int:
    """A draft by a staff member signed in on ``kit.client``, taken through ``steps``
    ("submit", "screen", "send" or a status) with the services; returns its number."""
    variables = _governance_world(kit)
    staff = kit.as_role(Role.STAFF)
    proposal = _draft(kit, staff.id, variables["EDSS"])
    actor, now = kit.session.get(User, staff.id), utcnow()
    for step in steps:
        if step == "submit":
            proposals.submit(kit.session, actor, proposal, now)
        elif step == "screen":
            proposals.start_screening(kit.session, actor, proposal, now)
        elif step == "send":
            registry_ids = [registry.id for registry in registries]
            proposals.send_to_registries(kit.session, actor, proposal, registry_ids, now)
        else:
            proposals.set_status(kit.session, actor, proposal, ProposalStatus(step), now)
    kit.session.commit()
    return proposal.id


def _staff_step(kit: Kit, path: str, data: dict[str, str], *steps: str) -> Prepared:
    """A status step of the staff proposal page on a proposal taken through ``steps``."""
    proposal_id = _staff_proposal(kit, *steps, registries=(kit.make_registry(),))
    url = f"{STAFF_GOVERNANCE}/proposals/{proposal_id}"
    return Prepared(f"{url}/{path}", data, lambda: _governance_state(kit), f"→ {url}")


def _staff_new_proposal(kit: Kit) -> Prepared:
    variables = _governance_world(kit)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_GOVERNANCE}/proposals/new",
        _proposal_data(variables["EDSS"]),
        lambda: _governance_state(kit),
        NumberedPage(f"→ {STAFF_GOVERNANCE}/proposals/<n>"),
    )


def _staff_edit_proposal(kit: Kit) -> Prepared:
    proposal_id = _staff_proposal(kit)
    variable_id = kit.session.scalar(
        sa.select(CatalogueVariable.id).where(CatalogueVariable.code == "DMT_EXPOSURE")
    )
    url = f"{STAFF_GOVERNANCE}/proposals/{proposal_id}"
    return Prepared(
        f"{url}/edit",
        _proposal_data(variable_id),
        lambda: _governance_state(kit),
        f"→ {url}",
    )


def _staff_return(kit: Kit) -> Prepared:
    return _staff_step(kit, "return", {"reason": "Name the sponsor."}, "submit")


def _staff_reject(kit: Kit) -> Prepared:
    return _staff_step(kit, "reject", {"reason": "Out of the network's scope."}, "submit", "screen")


def _staff_send(kit: Kit) -> Prepared:
    proposal_id = _staff_proposal(kit, "submit", "screen")
    registry = kit.make_registry()
    url = f"{STAFF_GOVERNANCE}/proposals/{proposal_id}"
    return Prepared(
        f"{url}/send",
        {"registry_ids": str(registry.id)},
        lambda: _governance_state(kit),
        f"→ {url}",
    )


def _staff_extend_deadline(kit: Kit) -> Prepared:
    proposal_id = _staff_proposal(
        kit, "submit", "screen", "send", registries=(kit.make_registry(),)
    )
    thread_id = kit.session.scalar(
        sa.select(DecisionThread.id).where(DecisionThread.proposal_id == proposal_id)
    )
    return Prepared(
        f"{STAFF_GOVERNANCE}/threads/{thread_id}/deadline",
        {"deadline": _deadline_text(60), "reason": "Their board meets later."},
        lambda: _governance_state(kit),
        f"→ {STAFF_GOVERNANCE}/proposals/{proposal_id}",
    )


ACTIVE_PROJECT = ("submit", "screen", "send", "decisions_closed", "active")


def _staff_complete(kit: Kit) -> Prepared:
    return _staff_step(kit, "complete", {"reason": "Published in 2027."}, *ACTIVE_PROJECT)


def _staff_close(kit: Kit) -> Prepared:
    return _staff_step(kit, "close", {"reason": "Funding ended."}, *ACTIVE_PROJECT)


VARIABLE_DATA = {
    "code": "RELAPSE_RATE",
    "name": "Relapse rate",
    "domain": "Disease course",
    "description": "Relapses a year.",
}


def _staff_new_variable(kit: Kit) -> Prepared:
    _governance_world(kit)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_GOVERNANCE}/catalogue/new",
        dict(VARIABLE_DATA),
        lambda: _governance_state(kit),
        f"→ {STAFF_GOVERNANCE}/catalogue",
    )


def _staff_edit_variable(kit: Kit) -> Prepared:
    variable_id = _governance_world(kit)["EDSS"]
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_GOVERNANCE}/catalogue/{variable_id}/edit",
        {**VARIABLE_DATA, "code": "EDSS", "name": "Expanded Disability Status Scale"},
        lambda: _governance_state(kit),
        f"→ {STAFF_GOVERNANCE}/catalogue",
    )


def _staff_retire_variable(kit: Kit) -> Prepared:
    variable_id = _governance_world(kit)["EDSS"]
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_GOVERNANCE}/catalogue/{variable_id}/retire",
        {"code": "EDSS"},
        lambda: _governance_state(kit),
        f"→ {STAFF_GOVERNANCE}/catalogue",
    )


def _staff_reinstate_variable(kit: Kit) -> Prepared:
    variable_id = _governance_world(kit)["EDSS"]
    staff = kit.as_role(Role.STAFF)
    catalogue.retire_variable(
        kit.session,
        kit.session.get(User, staff.id),
        kit.session.get(CatalogueVariable, variable_id),
        utcnow(),
    )
    kit.session.commit()
    return Prepared(
        f"{STAFF_GOVERNANCE}/catalogue/{variable_id}/reinstate",
        {"code": "EDSS"},
        lambda: _governance_state(kit),
        f"→ {STAFF_GOVERNANCE}/catalogue",
    )


def _sent_proposal(kit: Kit) -> tuple[Proposal, DecisionThread, User]:
    """A proposal by a verified clinician sent to one registry; (proposal, its thread, the
    proposer)."""
    _governance_world(kit)
    proposer = kit.make_user(Role.CLINICIAN, clinician_verified=True)
    proposal, (thread,) = make_proposal(
        kit.session, proposer, [kit.make_registry(code="NORTH")], scopes=[GOVERNANCE_SCOPE]
    )
    return proposal, thread, proposer


def _custodian_step(
    kit: Kit, path: str, data: dict[str, str], earlier: Callable[..., Any] | None = None
) -> Prepared:
    """A decision step of a custodian of the registry the proposal was sent to, signed in on
    ``kit.client``; ``earlier`` is a decision (a service) the custodian made already."""
    proposal, thread, _proposer = _sent_proposal(kit)
    custodian = kit.as_role(Role.CUSTODIAN, registry=kit.session.get(Registry, thread.registry_id))
    if earlier is not None:
        earlier(kit.session, kit.session.get(User, custodian.id), thread, utcnow())
        kit.session.commit()
    url = f"/governance/registries/NORTH/proposals/{proposal.id}"
    return Prepared(f"{url}/{path}", data, lambda: _governance_state(kit), f"→ {url}")


def _custodian_ask(kit: Kit) -> Prepared:
    return _custodian_step(kit, "ask", {"question": "Which vitamin D assay?"})


def _custodian_conditions(kit: Kit) -> Prepared:
    return _custodian_step(
        kit, "approve-with-conditions", {"conditions": "Federated analysis only."}
    )


def _custodian_decline(kit: Kit) -> Prepared:
    return _custodian_step(kit, "decline", {"decline_reason": "Our board said no."})


def _custodian_withdraw_approval(kit: Kit) -> Prepared:
    return _custodian_step(
        kit, "withdraw-approval", {"withdraw_reason": "A data issue."}, decisions.approve
    )


def _proposer_new_proposal(kit: Kit) -> Prepared:
    variables = _governance_world(kit)
    kit.as_role(Role.CLINICIAN, clinician_verified=True)
    return Prepared(
        "/governance/proposals/new",
        _proposal_data(variables["EDSS"]),
        lambda: _governance_state(kit),
        NumberedPage("→ /governance/proposals/<n>"),
    )


def _proposer_edit_proposal(kit: Kit) -> Prepared:
    variables = _governance_world(kit)
    proposer = kit.as_role(Role.CLINICIAN, clinician_verified=True)
    proposal = _draft(kit, proposer.id, variables["EDSS"])
    url = f"/governance/proposals/{proposal.id}"
    return Prepared(
        f"{url}/edit",
        _proposal_data(variables["DMT_EXPOSURE"]),
        lambda: _governance_state(kit),
        f"→ {url}",
    )


def _proposer_withdraw(kit: Kit) -> Prepared:
    proposal, _thread, proposer = _sent_proposal(kit)
    sign_in(kit.client, proposer)
    url = f"/governance/proposals/{proposal.id}"
    return Prepared(
        f"{url}/withdraw", {"reason": "Funding ended."}, lambda: _governance_state(kit), f"→ {url}"
    )


# A fixed id for the thread a proposer answers in: the answer field is named after its thread
# ("thread-<id>-answer"), and the matrices need the name before the world is built. No sequence
# reaches it, and every test starts with empty tables.
ANSWER_THREAD_ID = 900_000_001
ANSWER_FIELD = f"thread-{ANSWER_THREAD_ID}-answer"


def _proposer_answer(kit: Kit) -> Prepared:
    _governance_world(kit)
    proposer = kit.make_user(Role.CLINICIAN, clinician_verified=True)
    registry = kit.make_registry(code="NORTH")
    custodian = kit.make_user(Role.CUSTODIAN, registry=registry)
    proposal, _threads = make_proposal(kit.session, proposer, [], scopes=[GOVERNANCE_SCOPE])
    now = utcnow()
    thread = DecisionThread(
        id=ANSWER_THREAD_ID,
        proposal_id=proposal.id,
        registry_id=registry.id,
        status=ThreadStatus.SENT,
        deadline=proposal.decision_deadline,
        created_at=now,
        updated_at=now,
    )
    kit.session.add(thread)
    kit.session.flush()
    chain.append_event(
        kit.session, thread, DecisionEventKind.SENT, actor_id=proposer.id, text=None, now=now
    )
    decisions.ask_for_information(
        kit.session, kit.session.get(User, custodian.id), thread, "Which assay?", now
    )
    kit.session.commit()
    sign_in(kit.client, proposer)
    url = f"/governance/proposals/{proposal.id}"
    return Prepared(
        f"{url}/threads/{thread.id}/answer",
        {ANSWER_FIELD: "LC-MS/MS."},
        lambda: _governance_state(kit),
        f"→ {url}",
    )


def _create_token(kit: Kit) -> Prepared:
    kit.as_role(Role.CUSTODIAN)
    return Prepared(
        "/governance/tokens", {"name": "Nightly sync"}, lambda: _governance_state(kit), 201
    )


# The proposal's texts but its scientific summary (up to 20,000 characters: see below).
PROPOSAL_TEXT = (
    "title",
    "lead_researcher",
    "institution",
    "sponsor",
    "plain_summary",
    "ethics_reference",
)
PROPOSAL_CHOICES = ("language", "analysis_mode", "scope_codes")
VARIABLE_TEXT = ("code", "name", "domain", "description")
FORMS.update(
    {
        "governance: staff new proposal": FormSpec(
            _staff_new_proposal,
            PROPOSAL_TEXT,
            PROPOSAL_CHOICES,
            ("variable_ids",),
            ("decision_deadline",),
        ),
        "governance: staff edit proposal": FormSpec(
            _staff_edit_proposal,
            PROPOSAL_TEXT,
            PROPOSAL_CHOICES,
            ("variable_ids",),
            ("decision_deadline",),
        ),
        "governance: staff return": FormSpec(_staff_return, ("reason",)),
        "governance: staff reject": FormSpec(_staff_reject, ("reason",)),
        "governance: staff send to registries": FormSpec(
            _staff_send, number_fields=("registry_ids",)
        ),
        "governance: staff extend a deadline": FormSpec(
            _staff_extend_deadline, ("reason",), date_fields=("deadline",)
        ),
        "governance: staff complete": FormSpec(_staff_complete, ("reason",), refuses_empty=False),
        "governance: staff close": FormSpec(_staff_close, ("reason",), refuses_empty=False),
        "governance: staff new variable": FormSpec(_staff_new_variable, VARIABLE_TEXT),
        "governance: staff edit variable": FormSpec(_staff_edit_variable, VARIABLE_TEXT),
        "governance: staff retire variable": FormSpec(
            _staff_retire_variable, choice_fields=("code",)
        ),
        "governance: staff reinstate variable": FormSpec(
            _staff_reinstate_variable, choice_fields=("code",)
        ),
        "governance: custodian asks": FormSpec(_custodian_ask, ("question",)),
        "governance: custodian sets conditions": FormSpec(_custodian_conditions, ("conditions",)),
        "governance: custodian declines": FormSpec(_custodian_decline, ("decline_reason",)),
        "governance: custodian withdraws approval": FormSpec(
            _custodian_withdraw_approval, ("withdraw_reason",)
        ),
        "governance: proposer new proposal": FormSpec(
            _proposer_new_proposal,
            PROPOSAL_TEXT,
            PROPOSAL_CHOICES,
            ("variable_ids",),
            ("decision_deadline",),
        ),
        "governance: proposer edit proposal": FormSpec(
            _proposer_edit_proposal,
            PROPOSAL_TEXT,
            PROPOSAL_CHOICES,
            ("variable_ids",),
            ("decision_deadline",),
        ),
        "governance: proposer withdraws": FormSpec(_proposer_withdraw, ("reason",)),
        "governance: proposer answers a question": FormSpec(_proposer_answer, (ANSWER_FIELD,)),
        "governance: custodian creates an API token": FormSpec(_create_token, ("name",)),
    }
)

# Newsletter forms ---------------------------------------------------------------------------------
STAFF_NEWSLETTERS = "/staff/newsletters"
# Refusals of a campaign's buttons are flashed on its page with the field's own message (which
# differs by refusal): any error alert there will do.
ANY_FLASHED_ERROR = ""


def _newsletter_state(kit: Kit) -> dict[str, list[tuple]]:
    """Every newsletter table a form writes, row by row, and the mail queued: what a refused
    post must leave as it was."""
    kit.session.expire_all()

    def rows(*columns: Any) -> list[tuple]:
        query = sa.select(*columns).order_by(*columns[:2])
        return [tuple(row) for row in kit.session.execute(query)]

    return {
        "lists": rows(
            MailingList.id,
            MailingList.name,
            MailingList.description,
            MailingList.visibility,
            MailingList.required_scope,
            MailingList.is_archived,
        ),
        "subscribers": rows(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.language),
        "subscriptions": rows(
            Subscription.id, Subscription.list_id, Subscription.status, Subscription.subscriber_id
        ),
        "suppressions": rows(Suppression.email, Suppression.reason),
        "campaigns": rows(
            Campaign.id,
            Campaign.status,
            Campaign.kind,
            Campaign.subject,
            Campaign.preheader,
            Campaign.body_markdown,
            Campaign.audience,
            Campaign.timezone,
            Campaign.send_at,
            Campaign.cron,
            Campaign.next_run_at,
        ),
        "campaign lists": rows(CampaignList.campaign_id, CampaignList.list_id),
        "sends": rows(Send.id, Send.status),
        "status changes": rows(
            CampaignStatusChange.id, CampaignStatusChange.to_status, CampaignStatusChange.reason
        ),
        "mail": rows(OutboxMessage.id, OutboxMessage.kind),
    }


def _mailing_list(kit: Kit, name: str = "Research updates", **options: Any) -> MailingList:
    """A mailing list (committed)."""
    made = make_list(kit.session, name, **options)
    kit.session.commit()
    return made


def _subscribe(kit: Kit) -> Prepared:
    public = _mailing_list(kit)
    data = {"name": "Sam", "email": "sam@example.org", "language": "sv", "lists": str(public.id)}
    return Prepared(
        "/newsletters/subscribe",
        data,
        lambda: _newsletter_state(kit),
        "→ /newsletters/subscribe/check-email",
    )


def _preferences(kit: Kit) -> Prepared:
    members = _mailing_list(kit, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    kit.as_role(Role.PARTICIPANT)
    return Prepared(
        "/newsletters/preferences",
        {"lists": str(members.id)},
        lambda: _newsletter_state(kit),
        "→ /newsletters/preferences",
    )


LIST_DATA = {
    "name": "Survey alerts for members",
    "description": "New surveys you can answer.",
    "visibility": "accounts",
    "required_scope": "SURVEY_RECONTACT",
}


def _new_list(kit: Kit) -> Prepared:
    _consent_form(kit)  # the scopes a list may need are the published form's
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_NEWSLETTERS}/lists/new",
        dict(LIST_DATA),
        lambda: _newsletter_state(kit),
        f"→ {STAFF_NEWSLETTERS}/lists",
    )


def _edit_list(kit: Kit) -> Prepared:
    _consent_form(kit)
    existing = _mailing_list(kit)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_NEWSLETTERS}/lists/{existing.id}/edit",
        dict(LIST_DATA),
        lambda: _newsletter_state(kit),
        f"→ {STAFF_NEWSLETTERS}/lists",
    )


def _campaign_data(kit: Kit, list_id: int) -> dict[str, str]:
    """A campaign as the editor posts it, with every audience filter used once."""
    registry = kit.make_registry(code="SMSREG")
    topic_id = _make_topic(kit)
    return {
        "kind": "progress_report",
        "subject": "Progress on fatigue research",
        "preheader": "What the study found so far",
        "body": "Dear {name},\n\nThe **study** is half-way.",
        "list_ids": str(list_id),
        "roles": "participant",
        "countries": "SE",
        "languages": "sv",
        "registry_ids": str(registry.id),
        "topic_ids": str(topic_id),
    }


def _new_campaign(kit: Kit) -> Prepared:
    public = _mailing_list(kit)
    data = _campaign_data(kit, public.id)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_NEWSLETTERS}/campaigns/new",
        data,
        lambda: _newsletter_state(kit),
        NumberedPage(f"→ {STAFF_NEWSLETTERS}/campaigns/<n>"),
    )


def _draft_campaign(kit: Kit, status: CampaignStatus = CampaignStatus.DRAFT) -> Campaign:
    """A campaign on a public list with one confirmed subscriber (committed); one in progress
    (sending or paused) has its send."""
    public = _mailing_list(kit)
    subscribe_email(kit.session, "reader@example.org", [public])
    campaign = make_campaign(
        kit.session,
        [public],
        status=status,
        send_at=utcnow() + timedelta(days=1) if status == CampaignStatus.SCHEDULED else None,
    )
    if status in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
        send_status = SendStatus.SENDING if status == CampaignStatus.SENDING else SendStatus.PAUSED
        kit.session.add(
            Send(
                campaign_id=campaign.id,
                occurrence_at=utcnow(),
                status=send_status,
                subject=campaign.subject,
                preheader=campaign.preheader,
                body_markdown=campaign.body_markdown,
                audience_size=1,
                started_at=utcnow(),
            )
        )
    kit.session.commit()
    return campaign


def _edit_campaign(kit: Kit) -> Prepared:
    campaign = _draft_campaign(kit)
    data = _campaign_data(kit, _campaign_lists(kit, campaign.id)[0])
    kit.as_role(Role.STAFF)
    url = f"{STAFF_NEWSLETTERS}/campaigns/{campaign.id}"
    return Prepared(f"{url}/edit", data, lambda: _newsletter_state(kit), f"→ {url}")


def _campaign_lists(kit: Kit, campaign_id: int) -> list[int]:
    """The ids of the lists a campaign goes to."""
    query = sa.select(CampaignList.list_id).where(CampaignList.campaign_id == campaign_id)
    return list(kit.session.scalars(query))


def _local_time_text(days: float = 1) -> str:
    """A wall-clock time ``days`` from now, as a ``datetime-local`` input sends it."""
    return (utcnow() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def _schedule(kit: Kit, data: dict[str, str]) -> Prepared:
    campaign = _draft_campaign(kit)
    kit.as_role(Role.STAFF)
    url = f"{STAFF_NEWSLETTERS}/campaigns/{campaign.id}"
    return Prepared(f"{url}/schedule", data, lambda: _newsletter_state(kit), f"→ {url}")


def _schedule_once(kit: Kit) -> Prepared:
    data = {
        "how": "once",
        "send_at": _local_time_text(),
        "cron": "",
        "timezone": "Europe/Stockholm",
    }
    return _schedule(kit, data)


def _schedule_recurring(kit: Kit) -> Prepared:
    data = {"how": "recurring", "send_at": "", "cron": "0 9 * * mon", "timezone": "Europe/Paris"}
    return _schedule(kit, data)


def _campaign_action(kit: Kit, action: str, status: CampaignStatus) -> Prepared:
    campaign = _draft_campaign(kit, status)
    kit.as_role(Role.STAFF)
    url = f"{STAFF_NEWSLETTERS}/campaigns/{campaign.id}"
    return Prepared(
        f"{url}/{action}",
        {f"{action}-reason": "The steering group asked for it."},
        lambda: _newsletter_state(kit),
        f"→ {url}",
        FlashedRefusal(ANY_FLASHED_ERROR, kit.client),
    )


def _pause(kit: Kit) -> Prepared:
    return _campaign_action(kit, "pause", CampaignStatus.SENDING)


def _resume(kit: Kit) -> Prepared:
    return _campaign_action(kit, "resume", CampaignStatus.PAUSED)


def _cancel(kit: Kit) -> Prepared:
    return _campaign_action(kit, "cancel", CampaignStatus.SCHEDULED)


def _add_suppression(kit: Kit) -> Prepared:
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_NEWSLETTERS}/suppressions",
        {"email": "bounced@example.org"},
        lambda: _newsletter_state(kit),
        f"→ {STAFF_NEWSLETTERS}/suppressions",
    )


def _remove_suppression(kit: Kit) -> Prepared:
    kit.session.add(
        Suppression(
            email="bounced@example.org",
            reason=SuppressionReason.BOUNCE,
            source="test",
            created_at=utcnow(),
        )
    )
    kit.session.commit()
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_NEWSLETTERS}/suppressions/remove",
        {"email": "bounced@example.org"},
        lambda: _newsletter_state(kit),
        f"→ {STAFF_NEWSLETTERS}/suppressions",
        alert=AlertRefusal(),
    )


# The body of a campaign may be long (up to 50,000 characters): see below.
CAMPAIGN_TEXT = ("subject", "preheader")
CAMPAIGN_CHOICES = ("kind", "roles", "countries", "languages")
CAMPAIGN_NUMBERS = ("list_ids", "registry_ids", "topic_ids")
# The consent a list needs is left out of the choices: "" is one ("none").
FORMS.update(
    {
        "newsletters: sign up": FormSpec(_subscribe, ("name", "email"), ("language",), ("lists",)),
        "newsletters: preferences": FormSpec(
            _preferences, number_fields=("lists",), refuses_empty=False
        ),
        "newsletters: staff new list": FormSpec(
            _new_list, ("name", "description"), ("visibility",)
        ),
        "newsletters: staff edit list": FormSpec(
            _edit_list, ("name", "description"), ("visibility",)
        ),
        "newsletters: staff new campaign": FormSpec(
            _new_campaign, CAMPAIGN_TEXT, CAMPAIGN_CHOICES, CAMPAIGN_NUMBERS
        ),
        "newsletters: staff edit campaign": FormSpec(
            _edit_campaign, CAMPAIGN_TEXT, CAMPAIGN_CHOICES, CAMPAIGN_NUMBERS
        ),
        "newsletters: staff schedule once": FormSpec(
            _schedule_once, choice_fields=("how", "timezone"), date_fields=("send_at",)
        ),
        "newsletters: staff schedule a recurrence": FormSpec(
            _schedule_recurring, ("cron",), ("how", "timezone")
        ),
        "newsletters: staff pause": FormSpec(_pause, ("pause-reason",), refuses_empty=False),
        "newsletters: staff resume": FormSpec(_resume, ("resume-reason",), refuses_empty=False),
        "newsletters: staff cancel": FormSpec(_cancel, ("cancel-reason",), refuses_empty=False),
        "newsletters: staff suppress an address": FormSpec(_add_suppression, ("email",)),
        "newsletters: staff lift a suppression": FormSpec(_remove_suppression, ("email",)),
    }
)


# Two-step sign-in: the code step after the password ----------------------------------------------
def _code_step(kit: Kit) -> tuple[User, Callable[[], Any]]:
    """A participant with two-step sign-in who gave the right password on the kit's client,
    and the state a code changes (the last accepted time step; a used recovery code)."""
    user = kit.make_user(Role.PARTICIPANT, two_factor=True)
    response = post_form(kit.client, "/sign-in", {"email": user.email, "password": PASSWORD})
    assert urlsplit(response.headers["Location"]).path == "/sign-in/two-factor"

    def state() -> tuple:
        used = sa.select(RecoveryCode.id).where(RecoveryCode.used_at.is_not(None))
        return kit.fresh(User, user.id).totp_last_counter, kit.count(used)

    return user, state


def _authenticator_code(kit: Kit) -> Prepared:
    user, state = _code_step(kit)
    return Prepared(
        "/sign-in/two-factor", {"code": next_totp_code(kit.app, user.email)}, state, "→ /"
    )


def _recovery_code(kit: Kit) -> Prepared:
    user, state = _code_step(kit)
    codes = two_factor.replace_recovery_codes(kit.session, kit.fresh(User, user.id), utcnow())
    kit.session.commit()
    return Prepared("/sign-in/recovery-code", {"recovery_code": codes[0]}, state, "→ /")


FORMS.update(
    {
        "sign-in: authenticator code": FormSpec(_authenticator_code, ("code",)),
        "sign-in: recovery code": FormSpec(_recovery_code, ("recovery_code",)),
    }
)


# Priority rounds: staff forms --------------------------------------------------------------------
STAFF_ROUNDS = "/staff/rounds"


def _rounds_state(kit: Kit) -> dict[str, list[tuple]]:
    """Every rounds table staff forms write, the topics' statuses, the mail queued and the
    rounds' audit events: what a refused post must leave as it was."""
    from engage.rounds.models import PriorityRound, RoundAgreedItem, ShortlistItem

    kit.session.expire_all()

    def rows(*columns: Any) -> list[tuple]:
        query = sa.select(*columns).order_by(*columns[:2])
        return [tuple(row) for row in kit.session.execute(query)]

    return {
        "rounds": rows(
            PriorityRound.id,
            PriorityRound.title,
            PriorityRound.question,
            PriorityRound.max_ranks,
            PriorityRound.groups,
            PriorityRound.opens_at,
            PriorityRound.closes_at,
            PriorityRound.workshop_recorded_at,
            PriorityRound.workshop_note,
        ),
        "shortlist": rows(
            ShortlistItem.round_id,
            ShortlistItem.topic_id,
            ShortlistItem.evidence_status,
            ShortlistItem.evidence_note,
            ShortlistItem.evidence_url,
        ),
        "agreed": rows(
            RoundAgreedItem.round_id,
            RoundAgreedItem.position,
            RoundAgreedItem.topic_id,
            RoundAgreedItem.change_reason,
        ),
        "topics": rows(Topic.id, Topic.status),
        "mail": rows(OutboxMessage.id, OutboxMessage.kind),
        "audit": rows(AuditEvent.id, AuditEvent.action),
    }


def _round_form_data(**changes: str) -> dict[str, Any]:
    opens = utcnow() + timedelta(days=2)
    return {
        "title": "Treatment priorities 2027",
        "question": "Which unanswered questions about MS treatment matter most to you?",
        "roles": ["participant", "clinician"],
        "max_ranks": "10",
        "opens_at": opens.strftime("%Y-%m-%dT%H:%M"),
        "closes_at": (opens + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"),
        **changes,
    }


def _staff_round(kit: Kit, *, shortlisted: int = 2, state: str = "upcoming") -> tuple[Any, list]:
    """A round by staff with ``shortlisted`` topics on its shortlist, in ``state`` (upcoming,
    or closed with one ballot ranking them in order); (round, topic ids)."""
    from engage.rounds.models import PriorityRound
    from tests.rounds import staff_support

    staff = kit.make_user(Role.STAFF)
    topic_ids = [
        _make_topic(kit, TopicStatus.SHORTLISTED, staff_id=staff.id) for _ in range(shortlisted)
    ]
    round_ = staff_support.make_round(kit.session, staff, topic_ids, max_ranks=2)
    if state == "closed":
        staff_support.open_now(kit.session, round_)
        voter = kit.make_user(Role.PARTICIPANT)
        staff_support.add_ballot(kit.session, round_, voter.id, "people_with_ms", topic_ids[:2])
        staff_support.close_now(kit.session, round_)
    return kit.session.get(PriorityRound, round_.id), topic_ids


class NewRoundPage(str):
    """The landing of a created round: its page at the shortlist, whatever number it got."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and re.fullmatch(r"→ /staff/rounds/\d+", other) is not None

    __hash__ = str.__hash__


def _staff_new_round(kit: Kit) -> Prepared:
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_ROUNDS}/new",
        _round_form_data(),
        lambda: _rounds_state(kit),
        NewRoundPage(f"→ {STAFF_ROUNDS}/<n>"),
    )


def _staff_edit_round(kit: Kit) -> Prepared:
    round_, _ = _staff_round(kit)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_ROUNDS}/{round_.id}/edit",
        _round_form_data(title="Renamed round"),
        lambda: _rounds_state(kit),
        f"→ {STAFF_ROUNDS}/{round_.id}",
    )


def _staff_add_to_shortlist(kit: Kit) -> Prepared:
    round_, _ = _staff_round(kit, shortlisted=0)
    topic_id = _make_topic(kit, TopicStatus.SHORTLISTED)
    kit.as_role(Role.STAFF)
    data = {
        "topic_id": str(topic_id),
        "evidence_status": "partly_answered",
        "evidence_note": "One small trial.",
        "evidence_url": "https://example.org/review",
    }
    return Prepared(
        f"{STAFF_ROUNDS}/{round_.id}/shortlist",
        data,
        lambda: _rounds_state(kit),
        f"→ {STAFF_ROUNDS}/{round_.id}",
    )


def _staff_remove_from_shortlist(kit: Kit) -> Prepared:
    round_, topic_ids = _staff_round(kit, shortlisted=1)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"{STAFF_ROUNDS}/{round_.id}/shortlist/remove",
        {"topic_id": str(topic_ids[0])},
        lambda: _rounds_state(kit),
        f"→ {STAFF_ROUNDS}/{round_.id}",
        flashed=FlashedRefusal("Not removed:", kit.client),
    )


def _staff_workshop(kit: Kit) -> Prepared:
    round_, (first, second) = _staff_round(kit, state="closed")
    kit.as_role(Role.STAFF)
    # The survey placed ``first`` then ``second``: the workshop swaps them, with reasons.
    data = {
        "place_1": str(second),
        "reason_1": "The workshop found it more urgent.",
        "place_2": str(first),
        "reason_2": "Moved down to make room.",
        "note": "Twelve people took part.",
    }
    return Prepared(
        f"{STAFF_ROUNDS}/{round_.id}/workshop",
        data,
        lambda: _rounds_state(kit),
        f"→ {STAFF_ROUNDS}/{round_.id}/workshop",
    )


def _staff_adopt(kit: Kit) -> Prepared:
    from engage.rounds import workshop

    round_, (first, second) = _staff_round(kit, state="closed")
    staff = kit.as_role(Role.STAFF)
    workshop.record_workshop(
        kit.session,
        kit.session.get(User, staff.id),
        round_,
        [(first, ""), (second, "")],
        "",
        utcnow(),
    )
    kit.session.commit()
    return Prepared(
        f"{STAFF_ROUNDS}/{round_.id}/adopt",
        {"topic_ids": [str(first), str(second)], "confirm": "y"},
        lambda: _rounds_state(kit),
        f"→ {STAFF_ROUNDS}/{round_.id}/workshop",
    )


ROUND_TEXT = ("title", "question")
FORMS.update(
    {
        "rounds: staff new round": FormSpec(
            _staff_new_round, ROUND_TEXT, ("roles",), ("max_ranks",), ("opens_at", "closes_at")
        ),
        "rounds: staff edit round": FormSpec(
            _staff_edit_round, ROUND_TEXT, ("roles",), ("max_ranks",), ("opens_at", "closes_at")
        ),
        "rounds: staff add to shortlist": FormSpec(
            _staff_add_to_shortlist,
            ("evidence_note", "evidence_url"),
            ("evidence_status",),
            ("topic_id",),
        ),
        "rounds: staff remove from shortlist": FormSpec(
            _staff_remove_from_shortlist, number_fields=("topic_id",)
        ),
        "rounds: staff workshop": FormSpec(
            _staff_workshop, ("reason_1", "note"), ("place_1", "place_2")
        ),
        "rounds: staff adopt": FormSpec(_staff_adopt, number_fields=("topic_ids",)),
    }
)


# Priority rounds: the ballot -------------------------------------------------------------------
def _ballots_state(kit: Kit) -> dict[str, list[tuple]]:
    """The ballots and their chain: what a refused ballot must leave as it was."""
    from engage.rounds.models import Ballot, BallotEvent

    kit.session.expire_all()

    def rows(*columns: Any) -> list[tuple]:
        query = sa.select(*columns).order_by(*columns[:2])
        return [tuple(row) for row in kit.session.execute(query)]

    return {
        "ballots": rows(Ballot.id, Ballot.user_id, Ballot.ranking, Ballot.version),
        "events": rows(BallotEvent.id, BallotEvent.seq, BallotEvent.ranking),
    }


def _save_ballot(kit: Kit) -> Prepared:
    from tests.rounds.ballot_support import make_round

    staff, author = kit.make_user(Role.STAFF), kit.make_user(Role.PARTICIPANT)
    made = make_round(kit.session, staff.id, author.id)
    kit.as_role(Role.PARTICIPANT)
    return Prepared(
        f"/rounds/{made.id}/ballot",
        {"rank-2": "1", "rank-1": "2"},
        lambda: _ballots_state(kit),
        f"→ /rounds/{made.id}",
    )


# Only rank-2 is spoiled. An empty choice is "Not ranked": an empty rank-2 leaves rank-1's
# topic at rank 2 with nothing at rank 1 (refused), while an empty rank-1 is a valid ballot.
FORMS["rounds: ballot"] = FormSpec(_save_ballot, choice_fields=("rank-2",))


TEXT_CASES = [(form, field) for form, spec in FORMS.items() for field in spec.text_fields]
CHOICE_CASES = [(form, field) for form, spec in FORMS.items() for field in spec.choice_fields]
NUMBER_CASES = [(form, field) for form, spec in FORMS.items() for field in spec.number_fields]
DATE_CASES = [(form, field) for form, spec in FORMS.items() for field in spec.date_fields]
REFUSING_EMPTY = [form for form, spec in FORMS.items() if spec.refuses_empty]


def _landing(response: Any) -> int | str:
    """The status, or "→ path" for a redirect."""
    if 300 <= response.status_code < 400:
        return f"→ {urlsplit(response.headers['Location']).path}"
    return response.status_code


def _post_spoiled(kit: Kit, form: str, **changes: Any) -> tuple[Any, Prepared, Any]:
    """Prepare ``form``, post its data with ``changes``, and return (response, form, before)."""
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = post_form(kit.client, prepared.url, {**prepared.data, **changes})
    return response, prepared, before


def _assert_refused(response: Any, prepared: Prepared, before: Any, *texts: str) -> str:
    """A 400 page showing ``texts``, and nothing stored.

    A form with a flashed refusal may answer 303 instead: the page it leads to shows the flashed
    error (which stands in for ``ERROR_SUMMARY``) and the other ``texts``.
    """
    if prepared.flashed is not None and response.status_code == 303:
        page = prepared.flashed.page_after(response)
        assert prepared.flashed.shown_in(page), page
        texts = tuple(text for text in texts if text != ERROR_SUMMARY)
    elif prepared.alert is not None:
        page = response.get_data(as_text=True)
        assert response.status_code in prepared.alert.statuses, page
        if ERROR_SUMMARY in texts:
            assert prepared.alert.shown_in(page), page
        texts = tuple(text for text in texts if text != ERROR_SUMMARY)
    else:
        page = response.get_data(as_text=True)
        assert response.status_code == 400, page
    for text in texts:
        assert text in page
    assert prepared.state() == before
    return page


def _refused_with_a_flash(response: Any, prepared: Prepared) -> bool:
    """True when ``response`` is a form's flashed refusal (a 303 to a page showing it), or a
    row button's refusal (an alert on its page)."""
    if prepared.alert is not None and response.status_code in prepared.alert.statuses:
        return prepared.alert.shown_in(response.get_data(as_text=True))
    if prepared.flashed is None or response.status_code != 303:
        return False
    return prepared.flashed.shown_in(prepared.flashed.page_after(response))


# The table is right ---------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_the_prepared_data_is_accepted_and_stored(kit, form):
    # Every refusal below spoils exactly this data, so it must be good to begin with.
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = post_form(kit.client, prepared.url, prepared.data)
    assert _landing(response) == prepared.success, response.get_data(as_text=True)
    assert prepared.state() != before


# CSRF --------------------------------------------------------------------------------------
@pytest.mark.sqlite_only
@pytest.mark.parametrize("form", FORMS)
def test_missing_csrf_token_is_a_friendly_400_and_nothing_is_stored(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = kit.client.post(prepared.url, data=prepared.data)
    _assert_refused(response, prepared, before, TRY_AGAIN, FORM_EXPIRED)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("form", FORMS)
def test_wrong_csrf_tokens_are_refused(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    own = csrf_token(kit.client)
    wrong_tokens = {
        "another session's": csrf_token(kit.app.test_client()),
        "garbage": "not-a-token",
        "truncated": own[:-6],
        "with NUL": own + "\x00",
        "empty": "",
    }
    for kind, wrong in wrong_tokens.items():
        response = kit.client.post(prepared.url, data={**prepared.data, "csrf_token": wrong})
        assert response.status_code == 400, kind
        _assert_refused(response, prepared, before, TRY_AGAIN, FORM_EXPIRED)


# Bodies that are not an HTML form ---------------------------------------------------------------
@pytest.mark.sqlite_only
@pytest.mark.parametrize("form", REFUSING_EMPTY)
def test_json_bodies_are_not_read_as_a_form(kit, form):
    # Even with a valid CSRF token in the header a JSON body is not form data: the post is
    # handled as an empty form (refused, or for a list of checkboxes "none ticked").
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    token = csrf_token(kit.client)
    bodies = {
        "object": {**prepared.data, "csrf_token": token},
        "list": [prepared.data],
        "string": "display_name=Sam",
        "number": 42,
        "nested": {name: {"value": value} for name, value in prepared.data.items()},
        "lists": {name: [value, 1, None] for name, value in prepared.data.items()},
    }
    raw_bodies = {"null": "null", "malformed": '{"email": ', "empty": ""}
    headers = {"X-CSRFToken": token}
    responses = {
        **{
            shape: kit.client.post(prepared.url, json=body, headers=headers)
            for shape, body in bodies.items()
        },
        **{
            shape: kit.client.post(
                prepared.url, data=raw, headers=headers, content_type="application/json"
            )
            for shape, raw in raw_bodies.items()
        },
    }
    for shape, response in responses.items():
        assert response.status_code in (302, 303, 400), shape
    assert prepared.state() == before


@pytest.mark.sqlite_only
@pytest.mark.parametrize("form", FORMS)
def test_json_body_without_csrf_header_is_refused(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = kit.client.post(
        prepared.url, json={**prepared.data, "csrf_token": csrf_token(kit.client)}
    )
    _assert_refused(response, prepared, before, TRY_AGAIN)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("form", REFUSING_EMPTY)
def test_uploaded_files_in_place_of_fields_are_ignored(kit, form):
    # Engage takes no uploads: a file sent under a field's name is not that field's value.
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    data: dict[str, Any] = {"csrf_token": csrf_token(kit.client)}
    for name in prepared.data:
        data[name] = (io.BytesIO(b"<script>x</script>"), f"{name}.txt")
    response = kit.client.post(prepared.url, data=data, content_type="multipart/form-data")
    # Refused, or (registries enrolment) read as "no box ticked", which changes nothing here.
    assert response.status_code in (302, 303, 400)
    assert prepared.state() == before


# Size --------------------------------------------------------------------------------------
@pytest.mark.sqlite_only
@pytest.mark.parametrize("form", FORMS)
def test_body_over_max_content_length_is_a_4xx_page(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = post_form(
        kit.client, prepared.url, {**prepared.data, "padding": "x" * (MAX_CONTENT_LENGTH + 1)}
    )
    _assert_refused(response, prepared, before, TOO_LARGE)


@pytest.mark.parametrize("form", FORMS)
def test_a_megabyte_value_within_max_content_length_is_refused(kit, form):
    # Werkzeug parses it (no form memory limit applies to url-encoded bodies): the form's
    # own length and choice checks refuse it.
    spec = FORMS[form]
    field = (*spec.text_fields, *spec.choice_fields, *spec.number_fields)[0]
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    data = {**prepared.data, "csrf_token": csrf_token(kit.client), field: "x" * 1_000_000}
    assert len(urlencode(data, doseq=True)) < MAX_CONTENT_LENGTH
    response = kit.client.post(prepared.url, data=data)
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


@pytest.mark.parametrize("length", [10_001])  # one more than the longest text taken (a rationale)
@pytest.mark.parametrize(("form", "field"), TEXT_CASES)
def test_over_long_text_is_refused_next_to_the_form(kit, form, field, length):
    response, prepared, before = _post_spoiled(kit, form, **{field: "a" * length})
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


# Characters ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("form", "field"), TEXT_CASES)
def test_nul_in_text_is_refused_not_a_500(kit, form, field):
    # PostgreSQL text cannot hold NUL: it must be a form error, never reach the database.
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    value = str(prepared.data[field]) or "x"
    spoiled = {field: value[:2] + "\x00" + value[2:]}
    response = post_form(kit.client, prepared.url, {**prepared.data, **spoiled})
    page = _assert_refused(response, prepared, before, ERROR_SUMMARY)
    if "password" not in field and field != "code" and prepared.alert is None:
        assert NUL_MESSAGE in page


@pytest.mark.parametrize(
    "sample",
    ["\x01\x07\x1b[31m\x7f", "🧠👩🏽\u200d⚕️ \u202eevil\u202c שלום \ufeff\u200b"],
    ids=["control characters", "emoji, RTL and invisible characters"],
)
@pytest.mark.parametrize(("form", "field"), TEXT_CASES)
def test_unusual_characters_are_stored_or_refused_never_a_500(kit, form, field, sample):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    value = f"{prepared.data[field]}{sample}"
    response = post_form(kit.client, prepared.url, {**prepared.data, field: value})
    if response.status_code == 400 or _refused_with_a_flash(response, prepared):
        assert prepared.state() == before
    else:
        assert _landing(response) == prepared.success
        assert prepared.state() != before


@pytest.mark.parametrize("sample", ["Sam 🧠", "سام", "שלום עולם", "👩🏽\u200d⚕️ Dr S"])
def test_display_names_keep_emoji_and_rtl_text_exactly(kit, sample):
    prepared = _sign_up(kit)
    # A participant: a custodian would have to set up two-step sign-in before signing in below.
    data = {**prepared.data, "display_name": sample, "role": "participant"}
    response = post_form(kit.client, prepared.url, data)
    assert _landing(response) == prepared.success
    kit.session.expire_all()
    user = kit.session.scalar(sa.select(User).where(User.email == "sam@example.org"))
    assert user.display_name == sample

    sign_in(kit.client, user, NEW_PASSWORD)
    response = post_form(
        kit.client, "/account", {"display_name": sample + "!", "country": "SE", "language": "en"}
    )
    assert _landing(response) == "→ /account"
    assert kit.fresh(User, user.id).display_name == sample + "!"


# Choices and numbers ------------------------------------------------------------------------------
def _assert_each_value_refused(kit: Kit, form: str, field: str, values: list[str]) -> None:
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    for value in values:
        response = post_form(kit.client, prepared.url, {**prepared.data, field: value})
        assert response.status_code in (303, 400), f"{field}={value[:20]!r}"
        _assert_refused(response, prepared, before, ERROR_SUMMARY)


@pytest.mark.parametrize(("form", "field"), CHOICE_CASES)
def test_unknown_choice_values_are_refused(kit, form, field):
    _assert_each_value_refused(kit, form, field, ["admin", "", "x" * 10_000, "\x00", "🧠"])


@pytest.mark.parametrize(("form", "field"), NUMBER_CASES)
def test_numbers_that_name_no_registry_are_refused(kit, form, field):
    _assert_each_value_refused(
        kit, form, field, ["abc", "-5", "1.5", "0", "99999999999999999999", "1e3"]
    )


@pytest.mark.parametrize(("form", "field"), DATE_CASES)
def test_dates_that_are_no_date_or_out_of_range_are_refused(kit, form, field):
    _assert_each_value_refused(
        kit,
        form,
        field,
        [
            "",
            "abc",
            "\x00",
            "2030-05-01T14:00\x00",
            "2030-02-30T12:00",
            "99999-01-01T00:00",
            "9999-12-31T23:59",
            "2001-01-01T00:00",
            "x" * 10_000,
            "1e3",
        ],
    )


@pytest.mark.parametrize("role", ["staff", "admin", "STAFF", "participant "])
def test_sign_up_refuses_roles_that_are_not_offered(kit, role):
    response, prepared, before = _post_spoiled(kit, "sign-up", role=role)
    _assert_refused(response, prepared, before, ERROR_SUMMARY)
    assert kit.count(sa.select(User.id).where(User.role == Role.STAFF)) == 0


def test_staff_cannot_grant_custodian_rights_by_role_change(kit):
    response, prepared, before = _post_spoiled(kit, "staff: role", role="custodian")
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


def test_enrolment_in_a_retired_registry_is_refused(kit):
    retired = kit.make_registry(is_active=False)
    response, prepared, before = _post_spoiled(
        kit, "registries enrolment", registries=str(retired.id)
    )
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


def test_registry_codes_stay_unique_whatever_the_case(kit):
    kit.make_registry(code="OLDREG")
    response, prepared, before = _post_spoiled(kit, "staff: new registry", code=" oldreg ")
    _assert_refused(response, prepared, before, "Another registry already uses the code")


# Repeated fields -------------------------------------------------------------------------------
def test_sign_up_with_the_email_sent_twice_uses_the_first(kit):
    prepared = _sign_up(kit)
    data = {**prepared.data, "email": ["first@example.org", "second@example.org"]}
    assert _landing(post_form(kit.client, "/sign-up", data)) == prepared.success
    kit.session.expire_all()
    assert list(kit.session.scalars(sa.select(User.email))) == ["first@example.org"]


@pytest.mark.parametrize(
    ("roles", "created"),
    [
        (["staff", "participant"], None),
        (["participant", "staff"], Role.PARTICIPANT),
    ],
)
def test_sign_up_with_the_role_sent_twice_uses_the_first(kit, roles, created):
    prepared = _sign_up(kit)
    response = post_form(kit.client, "/sign-up", {**prepared.data, "role": roles})
    kit.session.expire_all()
    stored = list(kit.session.scalars(sa.select(User.role)))
    if created is None:
        assert response.status_code == 400
        assert stored == []
    else:
        assert _landing(response) == prepared.success
        assert stored == [created]


def test_a_registry_ticked_twice_is_one_enrolment(kit):
    prepared = _enrolment(kit)
    registry_id = prepared.data["registries"]
    response = post_form(kit.client, prepared.url, {"registries": [registry_id, registry_id]})
    assert _landing(response) == prepared.success
    assert prepared.state() == 1


def test_staff_role_sent_twice_uses_the_first(kit):
    prepared = _change_role(kit)
    response = post_form(kit.client, prepared.url, {"role": ["organisation", "staff"]})
    assert _landing(response) == prepared.success
    assert prepared.state()["role"] == Role.ORGANISATION


# Kept input ------------------------------------------------------------------------------------
def test_sign_up_keeps_name_and_email_but_never_echoes_the_password(kit):
    prepared = _sign_up(kit)
    secret = "my very secret passphrase"
    response = post_form(
        kit.client,
        "/sign-up",
        {
            **prepared.data,
            "display_name": "Sam Kept",
            "email": "kept@example.org",
            "password": secret,
            "password_confirm": secret + " typo",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The two passwords are not the same." in page
    assert 'value="Sam Kept"' in page
    assert 'value="kept@example.org"' in page
    assert secret not in page
    assert prepared.state() == 0


# HTML in text is stored as text and shown escaped ----------------------------------------
def _assert_escaped(page: str, payload: str) -> None:
    """``payload`` appears in ``page`` only HTML-escaped."""
    assert payload not in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert str(escape(payload)) in page


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_a_clinician_sign_up_is_shown_escaped_everywhere(kit, payload):
    response = post_form(
        kit.client,
        "/sign-up",
        {
            "role": "clinician",
            "display_name": payload,
            "email": "html@example.org",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "country": "SE",
            "language": "en",
            "profession": payload,
            "institution": payload,
        },
    )
    assert _landing(response) == "→ /sign-up/check-email"
    kit.session.expire_all()
    user = kit.session.scalar(sa.select(User).where(User.email == "html@example.org"))
    assert (user.display_name, user.profession, user.institution) == (payload,) * 3
    # The confirmation email greets nobody by the typed name: the address is not yet proven to
    # be theirs, so a stranger's text must not reach it.
    confirmation = kit.mailbox.last_to("html@example.org")
    assert payload not in confirmation.html and str(escape(payload)) not in confirmation.html
    assert "<script>alert" not in confirmation.html and "<img src=x" not in confirmation.html

    sign_in_response = post_form(
        kit.client, "/sign-in", {"email": user.email, "password": NEW_PASSWORD}
    )
    assert _landing(sign_in_response) == "→ /"
    _assert_escaped(kit.client.get("/").get_data(as_text=True), payload)  # welcome flash
    _assert_escaped(kit.client.get("/account").get_data(as_text=True), payload)

    staff_client = kit.app.test_client()
    sign_in(staff_client, kit.make_user(Role.STAFF))
    for url in ("/staff/users", f"/staff/users?q={user.email}", f"/staff/users/{user.id}"):
        _assert_escaped(staff_client.get(url).get_data(as_text=True), payload)
    response = post_form(staff_client, f"/staff/users/{user.id}/clinician", {"verified": "yes"})
    assert _landing(response) == f"→ /staff/users/{user.id}"
    _assert_escaped(staff_client.get(f"/staff/users/{user.id}").get_data(as_text=True), payload)


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_an_organisation_profile_is_shown_escaped(kit, payload):
    user = kit.as_role(Role.ORGANISATION)
    response = post_form(
        kit.client,
        "/account",
        {
            "display_name": payload,
            "country": "SE",
            "language": "en",
            "organisation_name": payload,
        },
    )
    assert _landing(response) == "→ /account"
    assert kit.fresh(User, user.id).organisation_name == payload
    _assert_escaped(kit.client.get("/account").get_data(as_text=True), payload)
    staff_client = kit.app.test_client()
    sign_in(staff_client, kit.make_user(Role.STAFF))
    _assert_escaped(staff_client.get(f"/staff/users/{user.id}").get_data(as_text=True), payload)


def test_html_in_a_registry_name_is_shown_escaped_wherever_registries_are_listed(kit):
    staff = kit.make_user(Role.STAFF)
    sign_in(kit.client, staff)
    response = post_form(
        kit.client,
        "/staff/registries/new",
        {"code": "XSS", "name": SCRIPT, "country": "SE", "is_active": "y"},
    )
    assert _landing(response) == "→ /staff/registries"
    registry = kit.session.scalar(sa.select(Registry).where(Registry.code == "XSS"))
    assert registry.name == SCRIPT
    _assert_escaped(kit.client.get("/staff/registries").get_data(as_text=True), SCRIPT)
    page = kit.client.get(f"/staff/registries/{registry.id}/edit").get_data(as_text=True)
    _assert_escaped(page, SCRIPT)

    custodian = kit.make_user(
        Role.CUSTODIAN, registry=registry, custodian_status=CustodianStatus.PENDING
    )
    _assert_escaped(kit.client.get(f"/staff/users/{custodian.id}").get_data(as_text=True), SCRIPT)

    guest = kit.app.test_client()
    _assert_escaped(guest.get("/sign-up").get_data(as_text=True), SCRIPT)
    participant = kit.make_user(Role.PARTICIPANT)
    sign_in(guest, participant)
    assert (
        _landing(post_form(guest, "/account/registries", {"registries": str(registry.id)}))
        == "→ /account"
    )
    _assert_escaped(guest.get("/account/registries").get_data(as_text=True), SCRIPT)
    _assert_escaped(guest.get("/account").get_data(as_text=True), SCRIPT)


def test_html_in_a_decline_reason_is_escaped_in_the_email(kit):
    prepared = _decide_custodian(kit)
    response = post_form(kit.client, prepared.url, {"decision": "decline", "reason": SCRIPT})
    assert _landing(response) == prepared.success
    assert prepared.state()["custodian_status"] == CustodianStatus.DECLINED
    message = kit.mailbox.messages[-1]
    _assert_escaped(message.html, SCRIPT)
    assert SCRIPT in message.text  # plain text is not HTML: kept as typed


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_typed_values_echoed_back_are_escaped(kit, payload):
    response = post_form(kit.client, "/sign-in", {"email": payload, "password": "x"})
    assert response.status_code == 400
    _assert_escaped(response.get_data(as_text=True), payload)
    response = post_form(kit.client, "/reset-password", {"email": payload})
    assert response.status_code == 400
    _assert_escaped(response.get_data(as_text=True), payload)
    sign_in(kit.client, kit.make_user(Role.STAFF))
    page = kit.client.get("/staff/users", query_string={"q": payload[:100]})
    assert page.status_code == 200
    _assert_escaped(page.get_data(as_text=True), payload)


# The user search (GET) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 10_000},
        {"q": "\x00"},
        {"q": "%_\\"},
        {"q": "🧠\u202e"},
        {"q": "' OR 1=1 --"},
        {"role": "admin"},
        {"role": "\x00"},
        {"role": ["staff", "admin"]},
        {"pending": "abc"},
        {"page": "abc"},
        {"page": "-5"},
        {"page": "0"},
        {"page": "1.5"},
        {"page": "99999999999999999999"},
        {"page": "\x00"},
        {"q": "a", "role": "participant", "pending": "y", "page": "2", "unknown": "x"},
    ],
    ids=lambda p: ",".join(f"{k}={str(v)[:12]!r}" for k, v in p.items()),
)
def test_user_search_survives_any_parameters(kit, params):
    kit.make_user(Role.PARTICIPANT, email="findme@example.org")
    sign_in(kit.client, kit.make_user(Role.STAFF))
    response = kit.client.get("/staff/users", query_string=params)
    assert response.status_code == 200
    assert "found." in response.get_data(as_text=True)
    audit = kit.client.get("/staff/audit", query_string={"page": params.get("page", "1")})
    assert audit.status_code == 200


def test_user_search_with_nul_or_over_long_text_is_not_a_filter(kit):
    kit.make_user(Role.PARTICIPANT, email="findme@example.org")
    sign_in(kit.client, kit.make_user(Role.STAFF))
    everyone = kit.client.get("/staff/users").get_data(as_text=True)
    assert "2 accounts found." in everyone
    for q in ("find\x00me", "x" * 101):
        page = kit.client.get("/staff/users", query_string={"q": q}).get_data(as_text=True)
        assert "2 accounts found." in page
    found = kit.client.get("/staff/users", query_string={"q": "FINDME"}).get_data(as_text=True)
    assert "1 account found." in found


def test_huge_ids_in_urls_are_not_found(kit):
    sign_in(kit.client, kit.make_user(Role.STAFF))
    for url in (
        "/staff/users/99999999999999999999",
        "/staff/users/2147483648",
        "/staff/registries/99999999999999999999/edit",
        "/staff/users/-1",
    ):
        assert kit.client.get(url).status_code == 404
    response = post_form(kit.client, "/staff/users/99999999999999999999/active", {"active": "no"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/%0d%0aSet-Cookie:%20x=1",
        "javascript:alert(1)",
        "/" + "a" * 5000,
        "/\x00",
    ],
)
def test_sign_in_next_never_leaves_the_site(kit, next_url):
    user = kit.make_user(Role.PARTICIPANT)
    response = post_form(
        kit.client,
        "/sign-in",
        {"email": user.email, "password": PASSWORD},
        query_string={"next": next_url},
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc in ("", "localhost")
    assert location.path.startswith("/") and not location.path.startswith("//")
    assert "\n" not in response.headers["Location"] and "\r" not in response.headers["Location"]
    again = kit.client.get("/sign-in", query_string={"next": next_url})
    assert again.status_code == 302
    assert urlsplit(again.headers["Location"]).netloc in ("", "localhost")


# Links from emails ------------------------------------------------------------------------------
def _tampered(good: str, other_purpose: str) -> dict[str, str]:
    return {
        "random": "Zm9vYmFy.ZZZZZZ.aW52YWxpZC1zaWduYXR1cmUtaW52YWxpZC1zaWduYXR1cmU",
        "truncated": good[:-5],
        # The first character: the last one of a base64 signature may carry only padding bits.
        "one character changed": ("f" if good[0] != "f" else "g") + good[1:],
        "5,000 characters": good + "A" * (5000 - len(good)),
        "other purpose": other_purpose,
        "NUL": good + "%00",
        "dots": "..",
        "unicode": "🧠.\u202e.x",
    }


TAMPERINGS = list(_tampered("x" * 40, "y"))


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_tampered_verification_links_are_refused(kit, tampering):
    user = kit.make_user(Role.PARTICIPANT, email_verified=False)
    good = kit.token("verify-email", account_services.verification_payload(user))
    reset = kit.token("reset-password", account_services.reset_payload(user))
    token = _tampered(good, reset)[tampering]
    response = kit.client.get(f"/verify-email/{token}")
    assert response.status_code == 400
    assert "This link does not work" in response.get_data(as_text=True)
    response = post_form(kit.client, f"/verify-email/{token}", {"password": PASSWORD})
    assert response.status_code == 400
    assert kit.fresh(User, user.id).email_verified_at is None
    assert kit.client.get(f"/verify-email/{good}").status_code == 200  # the real one works
    assert post_form(kit.client, f"/verify-email/{good}", {"password": PASSWORD}).status_code == 302
    assert kit.fresh(User, user.id).email_verified_at is not None


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_tampered_reset_links_are_refused(kit, tampering):
    user = kit.make_user(Role.PARTICIPANT)
    good = kit.token("reset-password", account_services.reset_payload(user))
    verify = kit.token("verify-email", account_services.verification_payload(user))
    token = _tampered(good, verify)[tampering]
    before = _user_state(kit, user.id)
    assert kit.client.get(f"/reset-password/{token}").status_code == 400
    response = post_form(
        kit.client,
        f"/reset-password/{token}",
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert "This link does not work" in response.get_data(as_text=True)
    assert _user_state(kit, user.id) == before
    assert kit.client.get(f"/reset-password/{good}").status_code == 200  # the real one works


@pytest.mark.parametrize(
    "payload",
    [
        {"uid": "1", "email": "x"},
        {"uid": None},
        {"uid": [1]},
        {},
        {"uid": 2**40},
    ],
)
def test_signed_links_with_a_strange_payload_are_refused(kit, payload):
    user = kit.make_user(Role.PARTICIPANT, email_verified=False)
    payload = {**payload, "uid": user.id} if payload.get("uid") == 2**40 else payload
    for purpose, url in (
        ("verify-email", "/verify-email/"),
        ("reset-password", "/reset-password/"),
    ):
        token = kit.token(purpose, payload)
        assert kit.client.get(url + token).status_code == 400
    assert kit.fresh(User, user.id).email_verified_at is None


# Methods ------------------------------------------------------------------------------------------
@pytest.mark.sqlite_only
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_get_the_405_page(kit, method):
    target = kit.make_user(Role.PARTICIPANT)
    registry = kit.make_registry()
    kit.as_role(Role.STAFF)
    before = _user_state(kit, target.id), _registries_state(kit)
    values = {
        "user_id": target.id,
        "registry_id": registry.id,
        "token": "x" * 40,
        "topic_id": 1,
        "comment_id": 1,
        "receipt_id": "00000000-0000-4000-8000-000000000000",
        "number": 1,
        "version_id": 1,
        "scope_id": 1,
        "request_id": 1,
        "message_id": 1,
        "proposal_id": 1,
        "thread_id": 1,
        "registry_code": "SMSREG",
        "notice_id": 1,
        "variable_id": 1,
        "token_id": 1,
        "list_id": 1,
        "campaign_id": 1,
        "send_id": 1,
        "round_id": 1,
    }
    adapter = kit.app.url_map.bind("localhost")
    rules = [r for r in kit.app.url_map.iter_rules() if r.endpoint != "static"]
    for rule in rules:
        url = adapter.build(rule.endpoint, {k: values[k] for k in rule.arguments})
        response = kit.client.open(
            url, method=method, data={"csrf_token": csrf_token(kit.client), "active": "no"}
        )
        assert response.status_code == 405, url
        if url.startswith("/api/"):
            # The registries' API answers in JSON, never with an HTML page.
            assert response.is_json and response.get_json()["error"], url
        else:
            assert "That can't be done from here" in response.get_data(as_text=True)
        assert method not in response.headers["Allow"]
    assert len(rules) > 20  # every page was tried
    assert (_user_state(kit, target.id), _registries_state(kit)) == before


# Topics: HTML in what people write never renders live ----------------------------------------
class _LiveMarkup(HTMLParser):
    """What a browser would run or load from a page: scripts other than the site's own files,
    images, frames and plugins, event-handler attributes and script URLs."""

    LOADING_TAGS = frozenset(
        {"img", "image", "iframe", "frame", "object", "embed", "video", "audio", "base", "style"}
    )
    URL_ATTRIBUTES = frozenset(
        {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in self.LOADING_TAGS:
            self.found.append(f"<{tag}>")
        if tag == "script":
            self._in_script = True
            if not (values.get("src") or "").startswith("/static/"):
                self.found.append(f"<script src={values.get('src')!r}>")
        if tag == "meta" and "http-equiv" in values:
            self.found.append("<meta http-equiv>")
        for name, value in attrs:
            # Browsers ignore whitespace and control characters inside a URL's scheme; the
            # only data: URL the site uses is its empty icon (a <link>).
            url = re.sub(r"[\x00-\x20]", "", value or "").lower()
            bad_schemes = ("javascript:", "vbscript:") + (("data:",) if tag != "link" else ())
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
            elif name in self.URL_ATTRIBUTES and url.startswith(bad_schemes):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"inline script {data[:40]!r}")


def _assert_not_live(page: str) -> None:
    """``page`` has no markup a browser would run or load beyond the site's own."""
    parser = _LiveMarkup()
    parser.feed(page)
    parser.close()
    assert parser.found == [], parser.found


def _assert_shown_as_text(page: str, *texts: str) -> None:
    """Each of ``texts`` appears in ``page`` escaped, as text, and nothing in it is live."""
    _assert_not_live(page)
    for text in texts:
        assert str(escape(text)) in page, text


def _rich_text(payload: str) -> str:
    """Markdown with ``payload`` and the usual ways of smuggling script through it."""
    return (
        f"{payload}\n\n[click me](javascript:alert(3)) "
        '<a href="JaVa&#x09;script:alert(4)" onclick="alert(5)">x</a> '
        "<img src=x onerror=alert(6)> <svg onload=alert(7)></svg> "
        "<iframe src=https://evil.example></iframe> [ok](https://ok.example)"
    )


def _page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def _send_topic_mail(kit: Kit) -> None:
    """Run the topic notification job now, as the scheduler would."""
    kit.session.commit()
    delivery.deliver(kit.app)


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_a_topic_its_comments_and_reports_never_renders_live(kit, payload):
    author = kit.as_role(Role.PARTICIPANT)
    hostile = {
        "title": f"{payload} swimming and fatigue",
        "question": f"Does swimming help? {payload}",
        "rationale": _rich_text(payload),
        "category": "lifestyle",
        "reference_links": f"https://example.org/{payload}\nhttps://example.org/?q={payload}",
    }
    response = post_form(kit.client, "/topics/new", hostile)
    assert _landing(response) == NewTopicPage("→ /topics/<the new topic>")
    topic = kit.session.scalar(sa.select(Topic).where(Topic.author_id == author.id))
    assert (topic.title, topic.question) == (hostile["title"], hostile["question"])
    assert topic.reference_links == hostile["reference_links"].split("\n")
    detail = f"/topics/{topic.id}"
    plain = (hostile["title"], hostile["question"], *topic.reference_links)
    _assert_shown_as_text(_page(kit.client, detail), *plain)
    _assert_shown_as_text(_page(kit.client, "/topics/mine"), hostile["title"])

    staff_client = kit.app.test_client()
    sign_in(staff_client, kit.make_user(Role.STAFF))
    _assert_shown_as_text(_page(staff_client, "/topics/moderation"), hostile["title"])
    published = post_form(
        staff_client, f"{detail}/moderate", {"status": "published", "reason": payload}
    )
    assert _landing(published) == f"→ {detail}"
    _assert_shown_as_text(_page(staff_client, detail), *plain, payload)  # the reason, in history

    commenter_client = kit.app.test_client()
    sign_in(commenter_client, kit.make_user(Role.CLINICIAN, clinician_verified=True))
    assert (
        _landing(post_form(commenter_client, f"{detail}/comments", {"body": _rich_text(payload)}))
        == f"→ {detail}"
    )
    comment = kit.session.scalar(sa.select(TopicComment).where(TopicComment.topic_id == topic.id))
    assert comment.body == _rich_text(payload)
    assert (
        _landing(post_form(commenter_client, f"{detail}/report", {"reason": f"topic {payload}"}))
        == f"→ {detail}"
    )
    report_url = f"/topics/comments/{comment.id}/report"
    assert (
        _landing(post_form(kit.client, report_url, {"reason": f"comment {payload}"}))
        == f"→ {detail}"
    )
    kit.session.expire_all()
    assert sorted(kit.session.scalars(sa.select(ContentReport.reason))) == [
        f"comment {payload}",
        f"topic {payload}",
    ]

    guest = kit.app.test_client()
    for client, url in (
        (guest, "/topics"),
        (guest, detail),
        (kit.client, detail),
        (kit.client, "/topics/mine"),
        (staff_client, detail),
    ):
        page = _page(client, url)
        _assert_not_live(page)
        assert str(escape(hostile["title"])) in page, url
    _assert_shown_as_text(
        _page(commenter_client, f"/topics/comments/{comment.id}/edit"), comment.body
    )
    for client in (guest, staff_client):
        page = _page(client, detail)
        _assert_shown_as_text(page, hostile["question"], *topic.reference_links)
        assert '<a href="https://ok.example" rel="nofollow noopener">ok</a>' in page  # kept
    queue = _page(staff_client, "/topics/moderation")
    _assert_shown_as_text(queue, f"topic {payload}", f"comment {payload}", comment.body)
    similar = kit.client.get("/topics/similar", query_string={"title": "swimming fatigue"})
    assert [t["title"] for t in similar.get_json()["topics"]] == [hostile["title"]]
    assert similar.mimetype == "application/json"
    assert similar.headers["X-Content-Type-Options"] == "nosniff"  # never sniffed as HTML

    _send_topic_mail(kit)
    message = kit.mailbox.last_to(author.email)
    assert message.subject == "Your topic: open for support"
    _assert_shown_as_text(message.html, hostile["title"], payload)
    assert hostile["title"] in message.text and payload in message.text  # plain text as typed


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_a_return_reason_and_a_merge_never_renders_live(kit, payload):
    author = kit.as_role(Role.ORGANISATION)
    returned_id = _make_topic(
        kit, TopicStatus.SUBMITTED, author_id=author.id, title=f"{payload} returned"
    )
    staff_client = kit.app.test_client()
    sign_in(staff_client, kit.make_user(Role.STAFF))
    response = post_form(
        staff_client, f"/topics/{returned_id}/moderate", {"status": "returned", "reason": payload}
    )
    assert _landing(response) == f"→ /topics/{returned_id}"
    for url in ("/topics/mine", f"/topics/{returned_id}"):
        _assert_shown_as_text(_page(kit.client, url), f"{payload} returned", payload)
    _assert_shown_as_text(_page(kit.client, f"/topics/{returned_id}/edit"), f"{payload} returned")

    source_id = _make_topic(kit, author_id=author.id, title=f"{payload} source")
    target_id = _make_topic(kit, title=f"{payload} target")
    response = post_form(
        staff_client, f"/topics/{source_id}/merge", {"target_id": str(target_id), "reason": payload}
    )
    assert _landing(response) == f"→ /topics/{target_id}"
    _assert_shown_as_text(_page(kit.client, f"/topics/{source_id}"), f"{payload} target")

    _send_topic_mail(kit)
    mail = {message.subject: message for message in kit.mailbox.to(author.email)}
    returned = mail["Your topic: returned to the author"]
    _assert_shown_as_text(returned.html, f"{payload} returned", payload)
    merged = mail["A topic you follow was merged into another"]
    _assert_shown_as_text(merged.html, f"{payload} source", f"{payload} target", payload)
    assert payload in returned.text and payload in merged.text  # plain text as typed


# Topics: other input that must be refused -------------------------------------------------------
TOPIC_REQUIRED_TEXT = [
    ("topics: propose", "title"),
    ("topics: propose", "question"),
    ("topics: propose", "rationale"),
    ("topics: edit returned topic", "question"),
    ("topics: comment", "body"),
    ("topics: edit comment", "body"),
    ("topics: report topic", "reason"),
    ("topics: report comment", "reason"),
    ("topics: staff merge", "reason"),
]


@pytest.mark.parametrize(("form", "field"), TOPIC_REQUIRED_TEXT)
def test_topic_text_left_empty_is_refused(kit, form, field):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    for blank in ("", "   ", "\r\n\t "):
        response = post_form(kit.client, prepared.url, {**prepared.data, field: blank})
        _assert_refused(response, prepared, before, ERROR_SUMMARY)


def test_a_topic_title_too_short_or_links_that_are_not_web_addresses_are_refused(kit):
    prepared = _propose_topic(kit)
    before = prepared.state()
    for field, value, message in (
        ("title", "Short?", "Use between 10 and 150 characters."),
        ("reference_links", "javascript:alert(1)", "is not a web address"),
        ("reference_links", "https://[::1", "is not a web address"),
        ("reference_links", "https://a\u2100b.example", "is not a web address"),
        ("reference_links", "data:text/html,<script>alert(1)</script>", "is not a web address"),
        ("reference_links", "\n".join(f"https://example.org/{n}" for n in range(6)), "at most 5"),
    ):
        response = post_form(kit.client, prepared.url, {**prepared.data, field: value})
        _assert_shown_as_text(_assert_refused(response, prepared, before, message))


def test_a_topic_field_sent_twice_uses_the_first(kit):
    prepared = _propose_topic(kit)
    data = {**prepared.data, "category": ["care", "astrology"], "title": [TOPIC_DATA["title"], "x"]}
    assert _landing(post_form(kit.client, prepared.url, data)) == prepared.success
    topic = kit.session.scalar(sa.select(Topic))
    assert (topic.category, topic.title) == (TopicCategory.CARE, TOPIC_DATA["title"])


@pytest.mark.parametrize(
    ("form", "field", "values"),
    [
        ("topics: propose", "category", ["astrology", "care"]),
        ("topics: staff moderate", "status", ["completed", "adopted"]),
        ("topics: staff merge", "target_id", ["0", "1"]),
        ("topics: support budget", "budget", ["0", "4"]),
        ("topics: staff resolve reports", "decision", ["delete", "dismiss"]),
    ],
)
def test_a_bad_first_value_of_a_repeated_topic_field_is_refused(kit, form, field, values):
    response, prepared, before = _post_spoiled(kit, form, **{field: values})
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


# Topics: ids that name nothing one may act on -----------------------------------------------------
PRIVATE_KINDS = ("submitted", "returned", "rejected", "withdrawn", "hidden")
HUGE_IDS = {"2**31": 2**31, "10**20": 10**20}


def _topic_world(kit: Kit) -> dict[str, int]:
    """Another participant's topics: one open, one of each private kind; and a missing number."""
    author_id = kit.make_user(Role.PARTICIPANT).id
    staff_id = kit.make_user(Role.STAFF).id
    world = {
        kind: _make_topic(kit, TopicStatus(kind), author_id=author_id, staff_id=staff_id)
        for kind in ("published", "submitted", "returned", "rejected", "withdrawn")
    }
    world["hidden"] = _make_topic(kit, author_id=author_id, staff_id=staff_id)
    kit.session.execute(sa.update(Topic).where(Topic.id == world["hidden"]).values(is_hidden=True))
    kit.session.commit()
    world["missing"] = max(world.values()) + 1000
    return world


def _answer(client: FlaskClient, response: Any) -> tuple[int, str | None]:
    """(status, the message flashed on the page a redirect leads to)."""
    assert response.status_code < 500, response.status_code
    if response.status_code != 303:
        return response.status_code, None
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    flashed = re.findall(r'(?:role="(?:alert|status)"|data-announce)>\s*<p>(.*?)</p>', page)
    return 303, " ".join(flashed) or None


TOPIC_ACTIONS = {
    "support": ("/topics/{}/support", {}),
    "withdraw support": ("/topics/{}/support/withdraw", {}),
    "comment": ("/topics/{}/comments", {"body": "Hello"}),
    "report": ("/topics/{}/report", {"reason": "Spam"}),
    "withdraw topic": ("/topics/{}/withdraw", {}),
    "edit topic": ("/topics/{}/edit", TOPIC_DATA),
}


@pytest.mark.parametrize("action", TOPIC_ACTIONS)
def test_acting_on_a_topic_one_may_not_see_is_refused_without_a_hint(kit, action):
    world = _topic_world(kit)
    kit.as_role(Role.PARTICIPANT)
    path, data = TOPIC_ACTIONS[action]
    before = _topics_state(kit)
    answers = {
        kind: _answer(kit.client, post_form(kit.client, path.format(topic_id), data))
        for kind, topic_id in {**world, **HUGE_IDS}.items()
        if kind != "published"
    }
    assert _topics_state(kit) == before
    assert answers["2**31"] == answers["10**20"] == (404, None)
    status, message = answers["missing"]
    assert status == 404 or (status == 303 and message), answers["missing"]
    for kind in PRIVATE_KINDS:  # exactly as if there were no such topic
        assert answers[kind] == answers["missing"], kind


def test_an_authors_actions_on_someone_elses_open_topic_are_not_found(kit):
    topic_id = _topic_world(kit)["published"]
    kit.as_role(Role.PARTICIPANT)
    before = _topics_state(kit)
    for action in ("withdraw topic", "edit topic"):
        path, data = TOPIC_ACTIONS[action]
        assert post_form(kit.client, path.format(topic_id), data).status_code == 404
    assert kit.client.get(f"/topics/{topic_id}/edit").status_code == 404
    assert _topics_state(kit) == before


def test_acting_on_a_comment_one_may_not_see_is_not_found(kit):
    world = _topic_world(kit)
    others = _make_comment(kit, world["published"])
    hidden = _make_comment(kit, world["published"])
    on_hidden_topic = _make_comment(kit, hidden_topic := _make_topic(kit))
    kit.session.execute(
        sa.update(TopicComment).where(TopicComment.id == hidden).values(is_hidden=True)
    )
    kit.session.execute(sa.update(Topic).where(Topic.id == hidden_topic).values(is_hidden=True))
    kit.session.commit()
    kit.as_role(Role.PARTICIPANT)
    before = _topics_state(kit)
    missing = max(others, hidden, on_hidden_topic) + 1000
    for comment_id in (missing, hidden, on_hidden_topic, *HUGE_IDS.values()):
        url = f"/topics/comments/{comment_id}/report"
        assert post_form(kit.client, url, {"reason": "Spam"}).status_code == 404, comment_id
    for comment_id in (missing, others, *HUGE_IDS.values()):
        url = f"/topics/comments/{comment_id}/edit"
        assert post_form(kit.client, url, {"body": "Mine now"}).status_code == 404, comment_id
        assert kit.client.get(url).status_code == 404
    assert _topics_state(kit) == before


def test_staff_actions_on_topics_that_do_not_exist_are_not_found(kit):
    missing = _topic_world(kit)["missing"]
    kit.as_role(Role.STAFF)
    before = _topics_state(kit)
    for topic_id in (missing, *HUGE_IDS.values()):
        for path, data in (
            ("moderate", {"status": "published"}),
            ("merge", {"target_id": "1", "reason": "Same"}),
            ("reports", {"comment_id": "", "decision": "dismiss"}),
        ):
            response = post_form(kit.client, f"/topics/{topic_id}/{path}", data)
            assert response.status_code == 404, (topic_id, path)
    assert _topics_state(kit) == before


@pytest.mark.parametrize("target", ["missing", "itself", *PRIVATE_KINDS, "merged", "2**31"])
def test_merging_into_a_topic_that_cannot_take_supports_is_refused(kit, target):
    world = _topic_world(kit)
    source = world["published"]
    merged = _make_topic(kit)
    topic_services.merge_topics(
        kit.session,
        kit.session.get(User, kit.make_user(Role.STAFF).id),
        kit.session.get(Topic, merged),
        kit.session.get(Topic, _make_topic(kit)),
        "Same question",
        utcnow(),
    )
    kit.session.commit()
    target_id = {**world, **HUGE_IDS, "itself": source, "merged": merged}[target]
    kit.as_role(Role.STAFF)
    before = _topics_state(kit)
    response = post_form(
        kit.client, f"/topics/{source}/merge", {"target_id": str(target_id), "reason": "Same"}
    )
    if target == "2**31":
        # Not a topic number at all: the form comes back with the error at its field.
        assert response.status_code == 400
        assert 'class="error-summary"' in response.get_data(as_text=True)
    else:
        status, message = _answer(kit.client, response)
        assert status == 303 and message.startswith("Not merged:"), message
    assert _topics_state(kit) == before


@pytest.mark.parametrize(
    "comment_id",
    ["999999", "²", "١", "-1", "1.0", "abc", "99999999999999999999", "\x00", "another topic's"],
)
def test_resolving_reports_of_a_comment_that_is_not_the_topics_is_not_found(kit, comment_id):
    prepared = _resolve_reports(kit)
    before = prepared.state()
    if comment_id == "another topic's":
        comment_id = str(_make_comment(kit, _make_topic(kit)))
        before = prepared.state()
    response = post_form(kit.client, prepared.url, {**prepared.data, "comment_id": comment_id})
    assert response.status_code == 404
    assert prepared.state() == before


# Topics: supports that cannot be given or taken back ----------------------------------------------
@pytest.mark.parametrize(
    ("status", "message"),
    [
        (TopicStatus.REJECTED, "This topic is not open for support."),
        (TopicStatus.ADOPTED, "This topic is “adopted for research”: support is closed."),
    ],
)
def test_supporting_a_closed_topic_leaves_the_ledger_alone(kit, status, message):
    topic_id = _make_topic(kit, status)
    kit.as_role(Role.PARTICIPANT)
    before = _topics_state(kit)
    response = post_form(kit.client, f"/topics/{topic_id}/support")
    assert _answer(kit.client, response) == (303, message)
    response = post_form(kit.client, f"/topics/{topic_id}/support/withdraw")
    assert _answer(kit.client, response) == (303, message)
    assert _topics_state(kit) == before


def test_supporting_twice_and_withdrawing_twice_change_the_ledger_once(kit):
    topic_id = _make_topic(kit)
    kit.as_role(Role.PARTICIPANT)
    before = _topics_state(kit)
    support, withdraw = f"/topics/{topic_id}/support", f"/topics/{topic_id}/support/withdraw"
    nothing_to_withdraw = (303, "You do not support this topic.")
    assert _answer(kit.client, post_form(kit.client, withdraw)) == nothing_to_withdraw
    assert _topics_state(kit) == before

    assert _answer(kit.client, post_form(kit.client, support)) == (
        303,
        "Thank you for your support.",
    )
    supported = _topics_state(kit)
    assert len(supported["supports"]) == len(supported["support events"]) == 1
    assert _answer(kit.client, post_form(kit.client, support)) == (
        303,
        "You already support this topic.",
    )
    assert _topics_state(kit) == supported

    assert _answer(kit.client, post_form(kit.client, withdraw)) == (
        303,
        "Your support is withdrawn.",
    )
    withdrawn = _topics_state(kit)
    assert withdrawn["supports"] == [] and len(withdrawn["support events"]) == 2
    assert _answer(kit.client, post_form(kit.client, withdraw)) == nothing_to_withdraw
    assert _topics_state(kit) == withdrawn


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.example/",
        "https://evil.example/",
        "/topics//evil.example",
        "/topics\\evil.example",
        "/topics\r\nSet-Cookie: x=1",
        "/topics\nLocation: https://evil.example",
        "/topics\x00",
        "/topics/" + "a" * 5000,
        "javascript:alert(1)",
    ],
)
def test_where_a_support_returns_to_never_leaves_the_site(kit, next_url):
    topic_id = _make_topic(kit)
    kit.as_role(Role.PARTICIPANT)
    response = post_form(kit.client, f"/topics/{topic_id}/support", {"next": next_url})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert "\n" not in location and "\r" not in location
    assert urlsplit(location).netloc in ("", "localhost")
    assert urlsplit(location).path.startswith("/topics")
    assert kit.count(sa.select(TopicSupport.id)) == 1  # the support itself was fine


# Topics: the list and the similar-title look-up (GET) ---------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 10_000},
        {"q": "\x00"},
        {"q": "%_\\"},
        {"q": "🧠\u202e"},
        {"q": "\x01\x07\x1b[31m\x7f"},
        {"q": "' OR 1=1 --"},
        {"q": SCRIPT},
        {"category": "astrology"},
        {"category": "\x00"},
        {"category": ["care", "astrology"]},
        {"status": "submitted"},
        {"status": "withdrawn"},
        {"status": "x" * 10_000},
        {"sort": "id; DROP TABLE topics"},
        {"sort": "random"},
        {"sort": ["random", "newest"]},
        {"page": "abc"},
        {"page": "-5"},
        {"page": "0"},
        {"page": "1.5"},
        {"page": "99999999999999999999"},
        {"page": "\x00"},
        {"per_page": "abc"},
        {"per_page": "0"},
        {"per_page": "-10"},
        {"per_page": "1000000"},
        {"per_page": "99999999999999999999"},
        {"endpoint": "x"},
        {"_method": "POST"},
        {"_external": "1"},
        {"_scheme": "javascript", "_external": "1", "_anchor": "\nalert(1)"},
        {"_anchor": SCRIPT},
        {"unknown": "x"},
    ],
    ids=lambda p: ",".join(f"{k}={str(v)[:12]!r}" for k, v in p.items()),
)
def test_topic_list_survives_any_parameters(kit, params):
    author_id, staff_id = kit.make_user(Role.PARTICIPANT).id, kit.make_user(Role.STAFF).id
    for _ in range(11):  # more than a page of ten, so the page links are drawn
        _make_topic(kit, author_id=author_id, staff_id=staff_id)
    _make_topic(kit, TopicStatus.SUBMITTED, title="A private submitted topic", staff_id=staff_id)
    kit.as_role(Role.PARTICIPANT)
    response = kit.client.get("/topics", query_string={"per_page": "10", **params})
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert re.search(r"\d+ topics? found", page)
    assert "A private submitted topic" not in page
    _assert_not_live(page)
    for link in re.findall(r'<a href="([^"]*)" rel="(?:prev|next)"', page):
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc, parts.fragment) == ("", "", ""), link
        assert parts.path == "/topics", link


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"title": ""},
        {"title": "x" * 10_000},
        {"title": "\x00"},
        {"title": "swimming\x00fatigue"},
        {"title": "%_\\ swimming"},
        {"title": "🧠\u202e swimming"},
        {"title": "\x01\x07\x1b[31m\x7f swimming"},
        {"title": ["swimming", "x"]},
        {"title": SCRIPT},
        {"title": "swimming fatigue"},
    ],
    ids=lambda p: ",".join(f"{k}={str(v)[:12]!r}" for k, v in p.items()) or "none",
)
def test_similar_titles_survive_any_parameters_and_show_only_public_topics(kit, params):
    public = _make_topic(kit, title="Swimming and fatigue in MS")
    _make_topic(kit, TopicStatus.SUBMITTED, title="Swimming and fatigue, privately")
    _make_topic(kit, TopicStatus.REJECTED, title="Swimming and fatigue, rejected")
    response = kit.client.get("/topics/similar", query_string=params)
    assert response.status_code == 200 and response.is_json
    found = [topic["id"] for topic in response.get_json()["topics"]]
    assert set(found) <= {public}
    if params.get("title") == "swimming fatigue":
        assert found == [public]


# Consent: the rest of the hostile input -----------------------------------------------------------
@pytest.mark.parametrize("form", ["consent: staff new version", "consent: staff edit version"])
def test_consent_full_text_over_long_or_with_nul_is_refused(kit, form):
    # The full text may be long (up to 100,000 characters), so it is not in the 10,001 case.
    response, prepared, before = _post_spoiled(kit, form, body="a" * 100_001)
    _assert_refused(response, prepared, before, ERROR_SUMMARY, "Use at most 100,000 characters.")
    response = post_form(kit.client, prepared.url, {**prepared.data, "body": "ab\x00cd"})
    _assert_refused(response, prepared, before, ERROR_SUMMARY, NUL_MESSAGE)


@pytest.mark.parametrize("form", ["consent: staff add scope", "consent: staff edit scope"])
def test_consent_scope_duo_codes_outside_the_vocabulary_are_refused(kit, form):
    # "" is a choice here ("none fits"), so the duo code is not in the choice table.
    _assert_each_value_refused(kit, form, "duo_code", ["admin", "DS", "x" * 10_000, "\x00", "🧠"])


@pytest.mark.parametrize(
    "code", ["genomic data", "1ABC", "A", "GENOMIC-DATA", "É_CODE", "A" * 41, "DROP TABLE"]
)
def test_consent_scope_codes_must_be_capitals_digits_and_underscores(kit, code):
    response, prepared, before = _post_spoiled(kit, "consent: staff add scope", code=code)
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


def test_editing_a_published_consent_form_is_refused_through_every_form(kit):
    version = _consent_form(kit)
    scope = consent_queries.scopes_of(kit.session, version.id)[0]
    kit.as_role(Role.STAFF)
    before = _consent_state(kit)
    url = f"/staff/consent/forms/{version.id}"
    attempts = [
        (f"{url}/edit", CONSENT_VERSION_DATA),
        (f"{url}/scopes", CONSENT_SCOPE_DATA),
        (f"/staff/consent/scopes/{scope.id}/edit", {**CONSENT_SCOPE_DATA, "code": scope.code}),
        (f"/staff/consent/scopes/{scope.id}/remove", {"code": scope.code}),
        (f"{url}/publish", {"confirm": "y"}),
    ]
    for target, data in attempts:
        response = post_form(kit.client, target, data)
        assert response.status_code in (303, 400), target
        page = (
            kit.client.get(response.headers["Location"])
            if response.status_code == 303
            else response
        ).get_data(as_text=True)
        refused = ("can no longer change", "A published version cannot change")
        assert any(text in page for text in refused), target
    assert _consent_state(kit) == before


def test_consent_decisions_on_a_draft_or_replaced_version_change_nothing(kit):
    person = _joined_participant(kit)
    page = _consent_page_state(kit)
    staff = kit.session.scalar(sa.select(User).where(User.role == Role.STAFF))
    draft = consent_versions.create_draft(kit.session, staff, FIRST_FORM, utcnow())
    kit.session.commit()
    before = _consent_state(kit)
    on_draft = post_form(
        kit.client,
        "/consent/choice",
        {**page, "version_id": str(draft.id), "scope": "GENOMIC_DATA", "decision": "permit"},
    )
    assert on_draft.status_code == 409
    assert "not open for decisions" in on_draft.get_data(as_text=True)
    consent_versions.publish_version(
        kit.session, staff, draft, justification=None, now=utcnow(), max_grade=8
    )
    kit.session.commit()
    before = _consent_state(kit)
    on_replaced = post_form(
        kit.client, "/consent/choice", {**page, "scope": "GENOMIC_DATA", "decision": "permit"}
    )
    assert on_replaced.status_code == 409
    assert "replaced by version 2" in on_replaced.get_data(as_text=True)
    assert _consent_state(kit) == before
    assert consent_support.events_of(kit.session, person)  # the earlier decisions stand


def test_a_consent_field_sent_twice_uses_the_first(kit):
    prepared = _consent_choice(kit)
    response = post_form(
        kit.client,
        prepared.url,
        {
            **prepared.data,
            "scope": ["IMAGING_DATA", "GENOMIC_DATA"],
            "decision": ["permit", "deny"],
        },
    )
    assert _landing(response) == prepared.success
    kit.session.expire_all()
    latest = kit.session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
    assert (latest.scope_code, latest.decision.value) == ("IMAGING_DATA", "permit")


def test_consent_urls_with_huge_or_malformed_ids_are_not_found(kit):
    _joined_participant(kit)
    for url in (
        "/consent/receipts/not-a-uuid",
        "/consent/receipts/00000000-0000-4000-8000-000000000000",
        "/consent/receipts/00000000-0000-4000-8000-000000000000.json",
        "/consent/forms/99999999999999999999",
        "/consent/forms/2147483648",
        "/consent/forms/0",
    ):
        assert kit.client.get(url).status_code == 404, url
    staff = kit.app.test_client()
    sign_in(staff, kit.make_user(Role.STAFF))
    for url in (
        "/staff/consent/forms/99999999999999999999",
        "/staff/consent/forms/2147483648/edit",
        "/staff/consent/scopes/2147483648/edit",
        "/staff/consent/participants/99999999999999999999",
    ):
        assert staff.get(url).status_code == 404, url
    for url in (
        "/staff/consent/erasure/2147483648",
        "/staff/consent/scopes/99999999999999999999/remove",
        "/staff/consent/forms/2147483648/publish",
    ):
        assert post_form(staff, url, {"confirm": "y", "code": "X"}).status_code == 404, url


@pytest.mark.parametrize(
    "email", ["x" * 300 + "@example.org", "a\x00b@example.org", "' OR 1=1 --", "🧠@🧠"]
)
def test_the_staff_participant_lookup_survives_any_address(kit, email):
    kit.as_role(Role.STAFF)
    response = kit.client.get("/staff/consent/forms", query_string={"email": email})
    assert response.status_code == 200
    assert "No participant has this email address." in response.get_data(as_text=True)


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_consent_texts_never_renders_live(kit, payload):
    prepared = _consent_add_scope(kit)
    data = {**prepared.data, "title": payload, "explanation": payload}
    assert _landing(post_form(kit.client, prepared.url, data)) == prepared.success
    version_page = kit.client.get(prepared.success[2:]).get_data(as_text=True)
    _assert_escaped(version_page, payload)
    edit = post_form(
        kit.client,
        prepared.success[2:] + "/edit",
        {**CONSENT_VERSION_DATA, "title": payload, "summary": payload, "body": payload},
    )
    assert _landing(edit) == prepared.success
    page = kit.client.get(prepared.success[2:]).get_data(as_text=True)
    assert "<script>alert" not in page and "<img src=x" not in page


# Governance: the rest of the hostile input -----------------------------------------------------
PROPOSAL_FORMS = [form for form in FORMS if form.endswith(("new proposal", "edit proposal"))]


@pytest.mark.parametrize("form", PROPOSAL_FORMS)
def test_a_scientific_summary_over_long_or_with_nul_is_refused(kit, form):
    # It may be long (up to 20,000 characters), so it is not in the 10,001 case.
    response, prepared, before = _post_spoiled(kit, form, scientific_summary="a" * 20_001)
    _assert_refused(response, prepared, before, ERROR_SUMMARY)
    response = post_form(
        kit.client, prepared.url, {**prepared.data, "scientific_summary": "ab\x00cd"}
    )
    _assert_refused(response, prepared, before, ERROR_SUMMARY, NUL_MESSAGE)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("body", ["json", "file"])
@pytest.mark.parametrize("form", ["governance: staff complete", "governance: staff close"])
def test_a_note_sent_as_json_or_a_file_is_not_read(kit, form, body):
    # An empty post is a valid one here (the note is optional): the step is taken, without
    # the note the body carried.
    prepared = FORMS[form].prepare(kit)
    note, token = prepared.data["reason"], csrf_token(kit.client)
    if body == "json":
        response = kit.client.post(
            prepared.url, json={"reason": note, "csrf_token": token}, headers={"X-CSRFToken": token}
        )
    else:
        data = {"csrf_token": token, "reason": (io.BytesIO(note.encode()), "note.txt")}
        response = kit.client.post(prepared.url, data=data, content_type="multipart/form-data")
    assert _landing(response) == prepared.success
    assert note not in str(prepared.state())


@pytest.mark.parametrize(
    "form", ["governance: staff edit proposal", "governance: proposer edit proposal"]
)
def test_a_proposal_field_missing_from_a_post_does_not_fall_back_to_the_saved_value(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    data = {name: value for name, value in prepared.data.items() if name != "title"}
    response = post_form(kit.client, prepared.url, data)
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


# Newsletters: the rest of the hostile input ------------------------------------------------------
CAMPAIGN_FORMS = ["newsletters: staff new campaign", "newsletters: staff edit campaign"]
LIST_FORMS = ["newsletters: staff new list", "newsletters: staff edit list"]


@pytest.mark.parametrize("form", CAMPAIGN_FORMS)
def test_a_campaign_body_over_long_or_with_nul_is_refused(kit, form):
    # It may be long (up to 50,000 characters), so it is not in the 10,001 case.
    response, prepared, before = _post_spoiled(kit, form, body="a" * 50_001)
    _assert_refused(response, prepared, before, ERROR_SUMMARY, "Use at most 50,000 characters.")
    for blank in ("", "  \r\n "):
        response = post_form(kit.client, prepared.url, {**prepared.data, "body": blank})
        _assert_refused(response, prepared, before, ERROR_SUMMARY, "Write the newsletter")
    response = post_form(kit.client, prepared.url, {**prepared.data, "body": "ab\x00cd"})
    _assert_refused(response, prepared, before, ERROR_SUMMARY, NUL_MESSAGE)


@pytest.mark.parametrize("form", CAMPAIGN_FORMS)
def test_a_campaign_for_staff_or_an_archived_list_is_refused(kit, form):
    prepared = FORMS[form].prepare(kit)
    archived = _mailing_list(kit, "Old news")
    kit.session.execute(
        sa.update(MailingList).where(MailingList.id == archived.id).values(is_archived=True)
    )
    kit.session.commit()
    before = prepared.state()
    for changes in ({"roles": "staff"}, {"list_ids": str(archived.id)}, {"list_ids": []}):
        response = post_form(kit.client, prepared.url, {**prepared.data, **changes})
        _assert_refused(response, prepared, before, ERROR_SUMMARY)


@pytest.mark.parametrize("form", LIST_FORMS)
def test_the_consent_a_list_needs_must_be_offered_and_only_on_account_lists(kit, form):
    # "" is a choice here ("none"), so the scope is not in the choice table.
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    for value in ["admin", "survey_recontact", "x" * 10_000, "\x00", "🧠"]:
        response = post_form(kit.client, prepared.url, {**prepared.data, "required_scope": value})
        _assert_refused(response, prepared, before, ERROR_SUMMARY)
    response = post_form(kit.client, prepared.url, {**prepared.data, "visibility": "public"})
    _assert_refused(response, prepared, before, ERROR_SUMMARY, "account holders only")


@pytest.mark.parametrize(
    "cron",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 9 * * 1",
        "60 9 * * mon",
        "0 24 * * mon",
        "0 9 31 2 *",
        "0 9 * * mon-funday",
        "@reboot",
        "0 9 * *",
        "0 9 * * mon *",
        "0 9 * * mon; rm -rf /",
        "0 9 ² * mon",
        "0 99999999999999999999 * * mon",
        "0 9 * * mon\x01",
        "0 9 * * mon;x",
        "0 9 * * mon<b>",
        "0 9 * jan!! mon",
        "٠ ٩ * * mon",
    ],
)
def test_cron_expressions_that_are_no_house_schedule_are_refused(kit, cron):
    response, prepared, before = _post_spoiled(
        kit, "newsletters: staff schedule a recurrence", cron=cron
    )
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


@pytest.mark.parametrize("status", [CampaignStatus.SENDING, CampaignStatus.PAUSED])
def test_a_campaign_being_sent_cannot_be_edited_or_rescheduled(kit, status):
    campaign = _draft_campaign(kit, status)
    public_id = _campaign_lists(kit, campaign.id)[0]
    data = _campaign_data(kit, public_id)
    kit.as_role(Role.STAFF)
    url = f"{STAFF_NEWSLETTERS}/campaigns/{campaign.id}"
    before = _newsletter_state(kit)

    edited = post_form(kit.client, f"{url}/edit", data)
    scheduled = post_form(
        kit.client,
        f"{url}/schedule",
        {"how": "once", "send_at": _local_time_text(), "timezone": "UTC"},
    )
    unscheduled = post_form(kit.client, f"{url}/unschedule")

    assert edited.status_code == 409
    assert "can no longer be edited" in edited.get_data(as_text=True)
    assert scheduled.status_code == 409
    assert "only a draft or a scheduled campaign can be scheduled" in scheduled.get_data(
        as_text=True
    )
    assert _answer(kit.client, unscheduled)[0] == 303
    assert _newsletter_state(kit) == before


@pytest.mark.parametrize(
    "token",
    [
        "².1.AAAAAAAAAAAAAAAAAAAAAAAA",
        "1.²³.AAAAAAAAAAAAAAAAAAAAAAAA",
        "9" * 5000 + ".1.AAAAAAAAAAAAAAAAAAAAAAAA",
        "1." + "9" * 5000 + ".AAAAAAAAAAAAAAAAAAAAAAAA",
        "-1.1.AAAAAAAAAAAAAAAAAAAAAAAA",
        " 1.1.AAAAAAAAAAAAAAAAAAAAAAAA",
        "1.1",
        "1.1.1.1",
        "🧠.🧠.🧠",
    ],
    ids=lambda token: repr(token[:16]),
)
def test_unsubscribe_links_whose_ids_are_no_numbers_are_refused(app, kit, token):
    public = _mailing_list(kit)
    subscribe_email(kit.session, "reader@example.org", [public])
    kit.session.commit()
    before = _newsletter_state(kit)
    mail_program = app.test_client(use_cookies=False)
    path = f"/newsletters/unsubscribe/{token}"

    answers = [
        kit.client.get(path),
        post_form(kit.client, f"{path}/confirm"),
        post_form(kit.client, f"{path}/all"),
        mail_program.post(path, data={"List-Unsubscribe": "One-Click"}),
    ]
    inbound = mail_program.post(
        "/newsletters/inbound-unsubscribe", data={"subject": f"unsubscribe {token}"}
    )

    assert [answer.status_code for answer in answers] == [400] * len(answers)
    for answer in answers:
        assert "This unsubscribe link is not valid." in answer.get_data(as_text=True)
    assert inbound.status_code == 200
    assert _newsletter_state(kit) == before


def test_huge_or_malformed_ids_in_newsletter_urls_are_not_found(kit):
    kit.as_role(Role.STAFF)
    for number in ("2147483648", "99999999999999999999", "0"):
        for url in (
            f"{STAFF_NEWSLETTERS}/campaigns/{number}",
            f"{STAFF_NEWSLETTERS}/campaigns/{number}/edit",
            f"{STAFF_NEWSLETTERS}/campaigns/{number}/preview",
            f"{STAFF_NEWSLETTERS}/campaigns/{number}/progress",
            f"{STAFF_NEWSLETTERS}/campaigns/{number}/schedule",
            f"{STAFF_NEWSLETTERS}/lists/{number}/edit",
            f"/newsletters/archive/{number}",
        ):
            assert kit.client.get(url).status_code == 404, url
        for action in ("pause", "resume", "cancel", "unschedule", "test-send"):
            url = f"{STAFF_NEWSLETTERS}/campaigns/{number}/{action}"
            assert post_form(kit.client, url).status_code == 404, url
        for action in ("archive", "restore"):
            url = f"{STAFF_NEWSLETTERS}/lists/{number}/{action}"
            assert post_form(kit.client, url, {"name": "x"}).status_code == 404, url
    for url in (f"{STAFF_NEWSLETTERS}/campaigns/-1", "/newsletters/archive/1.5"):
        assert kit.client.get(url).status_code == 404, url


@pytest.mark.parametrize(
    "page", ["abc", "-5", "0", "1.5", "99999999999999999999", "\x00", SCRIPT, ["2", "x"]]
)
def test_newsletter_listings_survive_any_page_parameter(kit, page):
    kit.as_role(Role.STAFF)
    for url in (
        "/newsletters/archive",
        f"{STAFF_NEWSLETTERS}/campaigns",
        f"{STAFF_NEWSLETTERS}/suppressions",
    ):
        response = kit.client.get(url, query_string={"page": page})
        assert response.status_code in (200, 404), url
        _assert_not_live(response.get_data(as_text=True))


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_newsletter_texts_never_renders_live(kit, payload):
    _consent_form(kit)
    kit.as_role(Role.STAFF)
    made = post_form(
        kit.client,
        f"{STAFF_NEWSLETTERS}/lists/new",
        {
            "name": f"{payload} news",
            "description": f"About {payload}",
            "visibility": "public",
            "required_scope": "",
        },
    )
    assert _landing(made) == f"→ {STAFF_NEWSLETTERS}/lists"
    list_id = kit.session.scalar(sa.select(MailingList.id))
    subscribe_email(kit.session, "reader@example.org", [kit.session.get(MailingList, list_id)])
    kit.session.commit()
    created = post_form(
        kit.client,
        f"{STAFF_NEWSLETTERS}/campaigns/new",
        {
            "kind": "research_update",
            "subject": f"{payload} subject",
            "preheader": f"{payload} preheader",
            "body": _rich_text(payload),
            "list_ids": str(list_id),
        },
    )
    assert _landing(created) == NumberedPage(f"→ {STAFF_NEWSLETTERS}/campaigns/<n>")
    campaign_url = created.headers["Location"]
    plain = (f"{payload} news", f"About {payload}")
    _assert_shown_as_text(_page(kit.client, f"{STAFF_NEWSLETTERS}/lists"), plain[0])
    _assert_shown_as_text(_page(kit.client, f"{STAFF_NEWSLETTERS}/lists/{list_id}/edit"), *plain)
    _assert_shown_as_text(_page(kit.client, f"{STAFF_NEWSLETTERS}/campaigns"), f"{payload} subject")
    for url in (campaign_url, f"{campaign_url}/preview", f"{campaign_url}/edit"):
        _assert_shown_as_text(_page(kit.client, url), f"{payload} subject")
    preview = _page(kit.client, f"{campaign_url}/preview")
    assert '<a href="https://ok.example"' in preview  # the safe link is kept

    # Sent: the archive shows it to anyone, as sanitised as the preview.
    campaign_id = int(campaign_url.rstrip("/").rsplit("/", 1)[1])
    campaign = kit.session.get(Campaign, campaign_id)
    kit.session.add(
        Send(
            campaign_id=campaign_id,
            occurrence_at=utcnow(),
            status=SendStatus.SENT,
            subject=campaign.subject,
            preheader=campaign.preheader,
            body_markdown=campaign.body_markdown,
            audience_size=1,
            started_at=utcnow(),
            finished_at=utcnow(),
        )
    )
    kit.session.commit()
    send_id = kit.session.scalar(sa.select(Send.id))
    guest = kit.app.test_client()
    _assert_shown_as_text(_page(guest, "/newsletters/subscribe"), *plain)
    _assert_shown_as_text(_page(guest, "/newsletters/archive"), f"{payload} subject")
    _assert_shown_as_text(_page(guest, f"/newsletters/archive/{send_id}"), f"{payload} subject")
