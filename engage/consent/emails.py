"""Consent emails: review reminders, paper forms recorded by staff, erasure request status.

The change they tell about is already saved when they are sent: a mail failure is logged and
the page still shows the state, so it never undoes or blocks the change.
"""

from __future__ import annotations

import logging

from engage import mail
from engage.accounts.models import User
from engage.consent.models import ConsentFormVersion, ConsentReceipt, ErasureRequest
from engage.urls import external_url

log = logging.getLogger(__name__)


def _send(message: mail.Message) -> bool:
    try:
        mail.send(message)
    except mail.MailError:
        log.warning("consent email not handed over: %s", ",".join(message.categories))
        return False
    return True


def review_reminder(user: User, version: ConsentFormVersion, number: int) -> mail.Message:
    """The reminder to review a new version of the consent form (``number``: 1st, 2nd, …)."""
    return mail.render_message(
        "consent_review_reminder",
        to=user.email,
        subject="Please review the updated consent form",
        user=user,
        version=version,
        number=number,
        link=external_url("consent.review"),
        dashboard_link=external_url("consent.dashboard"),
    )


def send_paper_consent_recorded(user: User, receipt: ConsentReceipt | None) -> bool:
    """Tell the participant staff recorded their paper form, with a link to the receipt."""
    if receipt is None:
        return False
    return _send(
        mail.render_message(
            "consent_paper_recorded",
            to=user.email,
            subject="Your paper consent form has been recorded",
            user=user,
            receipt_link=external_url("consent.receipt", receipt_id=receipt.id),
            dashboard_link=external_url("consent.dashboard"),
        )
    )


def send_erasure_status(user: User, request: ErasureRequest) -> bool:
    """Tell the participant where their erasure request stands."""
    return _send(
        mail.render_message(
            "consent_erasure_status",
            to=user.email,
            subject="Your request to erase your data",
            user=user,
            request=request,
            dashboard_link=external_url("consent.dashboard"),
        )
    )
