"""Newsletter delivery: claim a batch of delivery rows, send it as one SendGrid request, record
the answer. The claim rules are the core outbox's (:mod:`engage.claims`).

One batch, start to end:

1. **claim** up to ``NEWSLETTER_BATCH_SIZE`` (≤ 1,000) queued rows of one sending send and
   commit (PostgreSQL ``FOR UPDATE SKIP LOCKED``: two workers never share a row);
2. **re-check** just before sending: suppressed addresses become ``suppressed``; recipients who
   unsubscribed or no longer permit the list's consent scope become ``skipped``;
3. commit **attempt started**, then hand the batch over in one Mail Send request: one
   personalization per recipient, with its own ``List-Unsubscribe`` headers and only ids in
   ``custom_args`` and categories;
4. **record**: 2xx → ``accepted``; 429, 5xx or a refused connection → back to the queue with
   exponential backoff and jitter, never sooner than the provider's rate-limit reset; another
   4xx → ``failed`` with the provider's message; a timeout after the body went out →
   ``unknown``, settled only by the provider's ``processed``/``dropped`` events.

A worker killed anywhere leaves its claim to expire: rows it never attempted go back to the
queue, the batch it was handing over becomes ``unknown``. Nothing is sent twice blindly.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session

from engage import claims, mail
from engage.consent import queries as consent_queries
from engage.consent.errors import UnknownScope
from engage.db import Database
from engage.timeutil import utcnow
from newsletters import content, sending
from newsletters.models import (
    Campaign,
    Delivery,
    DeliveryBatch,
    DeliveryStatus,
    MailingList,
    Send,
    SendStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from newsletters.tokens import UnsubscribeSigner

log = logging.getLogger(__name__)

STATES = claims.ClaimStates(
    pending=DeliveryStatus.PENDING, claimed=DeliveryStatus.CLAIMED, unknown=DeliveryStatus.UNKNOWN
)
BATCH_SIZE = mail.MAX_PERSONALIZATIONS
LEASE_SECONDS = 300
MAX_ATTEMPTS = 8
# A worker told to wait longer than this by a rate limit ends its run instead of sleeping.
MAX_SLEEP_SECONDS = 5.0
CLAIMED_COLUMNS = (
    Delivery.id,
    Delivery.subscriber_id,
    Delivery.list_id,
    Delivery.user_id,
    Delivery.email,
    Delivery.name,
    Delivery.attempts,
)


@dataclass
class DeliveryReport:
    """What one delivery run did (counts of delivery rows, and of requests made)."""

    batches: int = 0
    requests: int = 0
    accepted: int = 0
    retrying: int = 0
    failed: int = 0
    unknown: int = 0
    suppressed: int = 0
    skipped: int = 0
    requeued: int = 0
    settled: int = 0
    finished_sends: int = 0
    paused_sends: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the job log."""
        return (
            f"{self.batches} batch(es), {self.requests} request(s): accepted {self.accepted}, "
            f"retrying {self.retrying}, failed {self.failed}, unknown {self.unknown}, "
            f"suppressed {self.suppressed}, skipped {self.skipped}; expired claims re-queued "
            f"{self.requeued}, settled {self.settled}; sends finished {self.finished_sends}"
        )


@dataclass
class _Prepared:
    """One send's message, rendered once, and what every batch of it shares."""

    send: Send
    rendered: content.RenderedNewsletter
    categories: list[str]
    scopes: dict[int, str | None]


def _setting(app: Flask, key: str, default: Any) -> Any:
    return app.config.get(key, default)


def _domain(app: Flask) -> str:
    return parseaddr(app.config["MAIL_FROM"])[1].rpartition("@")[2] or "engage.localhost"


# The stable Message-ID of one recipient's copy (the file backend's evidence too).
MESSAGE_ID = "<newsletter-{send}-{delivery:012d}.{stamp}@{domain}>"


def message_id(send: Send, delivery_id: int, domain: str) -> str:
    """The stable Message-ID of one recipient's copy."""
    stamp = int(send.started_at.timestamp())
    return MESSAGE_ID.format(send=send.id, delivery=delivery_id, stamp=stamp, domain=domain)


def expire_stale(session: Session, now: datetime) -> tuple[int, int]:
    """Settle deliveries whose claim's lease ran out (see :func:`engage.claims.expire_stale`)."""
    return claims.expire_stale(
        session,
        Delivery,
        STATES,
        now,
        unknown_reason="the sending worker stopped while handing the batch over",
        attempted=sa.exists().where(DeliveryBatch.claim_token == Delivery.claim_token),
    )


def settle_unknown_from_files(session: Session, app: Flask, limit: int = 5000) -> int:
    """With the file backend, settle ``unknown`` rows by whether their file was written (the
    provider's events settle them with SendGrid: see ``newsletters.events``)."""
    backend: mail.MailBackend = app.extensions["engage.mail"]
    if not isinstance(backend, mail.FileBackend):
        return 0
    rows = session.execute(
        sa.select(Delivery.id, Delivery.send_id)
        .where(Delivery.status == DeliveryStatus.UNKNOWN)
        .order_by(Delivery.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    sends = {
        send.id: send
        for send in session.scalars(sa.select(Send).where(Send.id.in_({r.send_id for r in rows})))
    }
    domain = _domain(app)
    delivered, missing = [], []
    for row in rows:
        written = backend.was_delivered(message_id(sends[row.send_id], row.id, domain))
        (delivered if written else missing).append(row.id)
    now = utcnow()
    unknown = Delivery.status == DeliveryStatus.UNKNOWN
    if delivered:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(delivered), unknown)
            .values(
                status=DeliveryStatus.ACCEPTED,
                accepted_at=now,
                claim_token=None,
                last_error="settled: the message file was written",
            )
            .execution_options(synchronize_session=False)
        )
    if missing:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(missing), unknown)
            .values(
                status=DeliveryStatus.PENDING,
                claim_token=None,
                next_attempt_at=now,
                last_error="settled: the message file was never written",
            )
            .execution_options(synchronize_session=False)
        )
    return len(rows)


def _prepare(session: Session, app: Flask, send: Send) -> _Prepared:
    campaign = session.get(Campaign, send.campaign_id)
    assert campaign is not None
    base_url = app.config["BASE_URL"].rstrip("/")
    rendered = content.render_newsletter(
        subject=send.subject,
        preheader=send.preheader,
        body_markdown=send.body_markdown,
        kind_label=campaign.kind.label,
        archive_url=f"{base_url}/newsletters/archive/{send.id}",
    )
    # The same for every recipient: filled in once here rather than per recipient.
    preferences = content.preferences_url(base_url)
    rendered = dataclasses.replace(
        rendered,
        html=rendered.html.replace(content.PREFERENCES_URL, preferences),
        text=rendered.text.replace(content.PREFERENCES_URL, preferences),
    )
    scopes = dict(
        session.execute(
            sa.select(MailingList.id, MailingList.required_scope).where(
                MailingList.id.in_(sending.list_ids_of(session, campaign.id))
            )
        ).all()
    )
    categories = ["newsletter", f"campaign-{campaign.id}", f"send-{send.id}"]
    return _Prepared(send=send, rendered=rendered, categories=categories, scopes=scopes)


def _take_out_ineligible(
    session: Session, prepared: _Prepared, token: str
) -> tuple[set[int], set[int]]:
    """Just before sending, take out of ``token``'s batch the recipients who may no longer
    receive it: a suppressed address becomes ``suppressed``; a recipient no longer confirmed on
    the list, or no longer permitting its consent scope, ``skipped``. One statement on the
    database side that writes only the rows taken out (the caller commits). Returns
    (suppressed ids, skipped ids)."""
    held = (Delivery.claim_token == token, Delivery.status == DeliveryStatus.CLAIMED)

    gone: list[sa.ColumnElement[bool]] = [
        ~sa.exists().where(
            Subscription.subscriber_id == Delivery.subscriber_id,
            Subscription.list_id == Delivery.list_id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
        )
    ]
    for list_id, scope in prepared.scopes.items():
        if not scope:
            continue
        try:
            permitting = consent_queries.permitting_ids(session, [scope])
        except UnknownScope:
            permitting = None
        if permitting is None:  # nobody can permit it any more
            gone.append(Delivery.list_id == list_id)
        else:
            gone.append(
                sa.and_(
                    Delivery.list_id == list_id,
                    sa.or_(Delivery.user_id.is_(None), Delivery.user_id.not_in(permitting)),
                )
            )
    suppressed_address = sa.exists().where(Suppression.email == Delivery.email)
    rows = session.execute(
        sa.update(Delivery)
        .where(*held, sa.or_(suppressed_address, *gone))
        .values(
            status=sa.case(
                (suppressed_address, DeliveryStatus.SUPPRESSED.value),
                else_=DeliveryStatus.SKIPPED.value,
            ),
            claim_token=None,
            last_error=sa.case(
                (suppressed_address, "the address is suppressed"),
                else_="unsubscribed, or no longer permits the list's consent scope",
            ),
        )
        .returning(Delivery.id, Delivery.status)
        .execution_options(synchronize_session=False)
    ).all()
    suppressed = {row_id for row_id, status in rows if status == DeliveryStatus.SUPPRESSED}
    skipped = {row_id for row_id, status in rows if status != DeliveryStatus.SUPPRESSED}
    return suppressed, skipped


def _claim(
    session: Session,
    prepared: _Prepared,
    token: str,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    after_id: int | None = None,
) -> list[Any]:
    """Claim up to ``limit`` due recipients of the send for ``token`` (the shared claim rules
    of ``engage.claims``; the caller commits at once). Returns the claimed rows.

    :param after_id: only rows after this id (where this worker's last claim ended): the
        queue index keeps entries of claimed rows until vacuum, and a scan from the start
        would step over all of them on every claim of a large send.
    """
    due = [Delivery.send_id == prepared.send.id, Delivery.next_attempt_at <= now]
    if after_id is not None:
        due.append(Delivery.id > after_id)
    return claims.claim(
        session,
        Delivery,
        STATES,
        due,
        now=now,
        lease=lease,
        token=token,
        limit=limit,
        returning=CLAIMED_COLUMNS,
    )


def _batch(
    app: Flask, prepared: _Prepared, rows: list[Any], signer: UnsubscribeSigner
) -> mail.Batch:
    """One Mail Send request's worth: the send's message once, and per recipient the
    placeholders' values, the one-click unsubscribe headers, the ids and the Message-ID.

    A million recipients pass through here, so the per-recipient work is inlined (the same
    values ``content.substitutions`` and ``content.list_unsubscribe_headers`` make; tokens
    are URL-safe as made, so they need no quoting)."""
    base_url = app.config["BASE_URL"].rstrip("/")
    mailto = app.config.get("NEWSLETTER_UNSUBSCRIBE_MAILTO") or None
    domain = _domain(app)
    send = prepared.send
    send_id = str(send.id)
    stamp = int(send.started_at.timestamp())
    unsubscribe_prefix = content.unsubscribe_url(base_url, "")
    escape = content.escape
    recipients = []
    for row in rows:
        token = signer.make(row.subscriber_id, row.list_id)
        url = unsubscribe_prefix + token
        name = row.name or ""
        links = f"<{url}>"
        if mailto:
            links += f", <mailto:{mailto}?subject=unsubscribe%20{token}>"
        recipients.append(
            mail.BatchRecipient(
                to=row.email,
                substitutions={
                    content.NAME_TEXT: name,
                    content.NAME_HTML: str(escape(name)),
                    content.UNSUBSCRIBE_URL: url,
                },
                headers={
                    "List-Unsubscribe": links,
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                custom_args={"delivery_id": str(row.id), "send_id": send_id},
                message_id=MESSAGE_ID.format(
                    send=send_id, delivery=row.id, stamp=stamp, domain=domain
                ),
            )
        )
    return mail.Batch(
        subject=prepared.rendered.subject,
        text=prepared.rendered.text,
        html=prepared.rendered.html,
        recipients=recipients,
        categories=prepared.categories,
    )


def _send_batch(
    session: Session,
    app: Flask,
    prepared: _Prepared,
    rows: list[Any],
    token: str,
    signer: UnsubscribeSigner,
    report: DeliveryReport,
) -> float | None:
    """Hand over and record one claimed batch (``rows``: the claimed recipients). Returns
    seconds the provider asked to wait (a rate limit), else None."""
    try:
        batch = _batch(app, prepared, rows, signer)
    except Exception:
        # Nothing was handed over: give the rows back as never attempted.
        claims.record(
            session,
            Delivery,
            STATES,
            token,
            {"status": DeliveryStatus.PENDING, "claim_token": None},
        )
        session.commit()
        raise
    # Durable before the hand-over: from here on, a crash leaves the batch's outcome unknown.
    session.add(
        DeliveryBatch(
            claim_token=token, send_id=prepared.send.id, size=len(rows), attempt_started_at=utcnow()
        )
    )
    session.commit()
    backend: mail.MailBackend = app.extensions["engage.mail"]
    report.requests += 1 if isinstance(backend, mail.SendGridBackend) else len(rows)
    attempted = {"attempts": Delivery.attempts + 1}
    try:
        results = mail.send_batch(backend, batch, app.config["MAIL_FROM"])
    except mail.MailOutcomeUnknown as exc:
        report.unknown += len(rows)
        claims.record(
            session,
            Delivery,
            STATES,
            token,
            {"status": DeliveryStatus.UNKNOWN, "last_error": str(exc)[:500], **attempted},
        )
        session.commit()
        return None
    except mail.MailError as exc:
        attempts = max(row.attempts for row in rows) + 1
        if exc.transient and attempts < MAX_ATTEMPTS:
            report.retrying += len(rows)
            delay = claims.backoff(
                attempts,
                base_seconds=float(_setting(app, "NEWSLETTER_RETRY_BASE_SECONDS", 30)),
                jitter=True,
                at_least_seconds=exc.retry_after,
            )
            claims.record(
                session,
                Delivery,
                STATES,
                token,
                {
                    "status": DeliveryStatus.PENDING,
                    "claim_token": None,
                    "next_attempt_at": utcnow() + delay,
                    "last_error": str(exc)[:500],
                    **attempted,
                },
            )
            session.commit()
            return exc.retry_after
        report.failed += len(rows)
        claims.record(
            session,
            Delivery,
            STATES,
            token,
            {
                "status": DeliveryStatus.FAILED,
                "claim_token": None,
                "last_error": str(exc)[:500],
                **attempted,
            },
        )
        session.commit()
        return None
    report.accepted += len(rows)
    provider_id = (results[0].message_id or "")[:64] if len(results) == 1 else None
    claims.record(
        session,
        Delivery,
        STATES,
        token,
        {
            "status": DeliveryStatus.ACCEPTED,
            "claim_token": None,
            "accepted_at": utcnow(),
            "provider_message_id": provider_id or None,
            "last_error": None,
            **attempted,
        },
    )
    session.commit()
    return None


def _sending_sends(session: Session, send_ids: list[int] | None) -> list[Send]:
    query = sa.select(Send).where(Send.status == SendStatus.SENDING).order_by(Send.id)
    if send_ids is not None:
        query = query.where(Send.id.in_(send_ids))
    return list(session.scalars(query))


def _check_breaker(
    session: Session, app: Flask, send_ids: list[int], report: DeliveryReport
) -> None:
    from newsletters import breaker

    check = getattr(breaker, "check_sends", None)
    if check is None or not send_ids:
        return
    paused = check(session, send_ids, utcnow(), app.config)
    session.commit()
    report.paused_sends.extend(paused or [])


def deliver(
    app: Flask,
    *,
    now: datetime | None = None,
    stop: threading.Event | None = None,
    max_batches: int | None = None,
    send_ids: list[int] | None = None,
    settle: bool = True,
) -> DeliveryReport:
    """Run one delivery worker until nothing is due, ``max_batches`` were claimed, or
    ``stop`` is set (the batch in hand is finished first).

    :param now: the time due rows are compared with (default: the clock, re-read per batch).
    :param settle: expire stale claims and settle unknown rows from evidence first.
    """
    report = DeliveryReport()
    size = max(1, min(int(_setting(app, "NEWSLETTER_BATCH_SIZE", BATCH_SIZE)), BATCH_SIZE))
    lease = timedelta(seconds=float(_setting(app, "NEWSLETTER_LEASE_SECONDS", LEASE_SECONDS)))
    signer = UnsubscribeSigner(app.config["SECRET_KEY"])
    fixed_now = now
    with app.app_context():
        session = Database.new_session(app)
        try:
            if settle:
                report.requeued, _unknown = expire_stale(session, fixed_now or utcnow())
                session.commit()
                report.settled = settle_unknown_from_files(session, app)
                session.commit()
            prepared: dict[int, _Prepared] = {}
            # Per send, the last id this worker claimed (the next claim starts after it, and
            # from the start again once nothing is left after it).
            cursor: dict[int, int] = {}
            touched: set[int] = set()
            while not (stop is not None and stop.is_set()):
                if max_batches is not None and report.batches >= max_batches:
                    break
                claimed = None
                for send in _sending_sends(session, send_ids):
                    if send.id not in prepared:
                        prepared[send.id] = _prepare(session, app, send)
                    token = secrets.token_hex(8)
                    for after_id in dict.fromkeys([cursor.get(send.id), None]):
                        rows = _claim(
                            session,
                            prepared[send.id],
                            token,
                            now=fixed_now or utcnow(),
                            lease=lease,
                            limit=size,
                            after_id=after_id,
                        )
                        session.commit()
                        if rows:
                            break
                    if rows:
                        cursor[send.id] = max(row.id for row in rows)
                        claimed = (send, token, rows)
                        break
                if claimed is None:
                    break
                send, token, rows = claimed
                report.batches += 1
                touched.add(send.id)
                # Committed with the batch's start mark (or at once when nobody is left).
                suppressed, skipped = _take_out_ineligible(session, prepared[send.id], token)
                report.suppressed += len(suppressed)
                report.skipped += len(skipped)
                sendable = [row for row in rows if row.id not in suppressed | skipped]
                if not sendable:
                    session.commit()
                    continue
                wait = _send_batch(session, app, prepared[send.id], sendable, token, signer, report)
                if wait:
                    if wait > MAX_SLEEP_SECONDS:
                        break
                    if stop is not None:
                        stop.wait(wait)
                    else:
                        time.sleep(wait)
            report.finished_sends = sending.finish_done_sends(session, utcnow(), touched or None)
            session.commit()
            _check_breaker(session, app, sorted(touched), report)
        finally:
            session.rollback()
            session.close()
    return report


def deliver_due(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """The ``newsletters.deliver`` job: deliver what is due (each step commits on its own)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return deliver(app, stop=app.extensions.get("engage.stop")).summary()


def expire_leases(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """The ``newsletters.expire_leases`` job: settle expired claims, settle unknown rows from
    the file backend's evidence, and finish sends with nothing left in flight."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    requeued, unknown = expire_stale(session, now)
    settled = settle_unknown_from_files(session, app)
    finished = sending.finish_done_sends(session, now)
    return (
        f"expired claims: {requeued} re-queued, {unknown} now unknown; settled {settled}; "
        f"sends finished {finished}"
    )
