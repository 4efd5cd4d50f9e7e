"""Requests to erase a participant's data: the participant asks (when leaving the programme),
staff move the request on until it is completed or declined.

Functions take the session, the acting person and ``now`` explicitly and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.consent.errors import ErasureRefused, require_participant, require_staff
from engage.consent.models import ErasureRequest, ErasureStatus
from engage.consent.queries import open_erasure_request
from engage.db import lock_rows


def request_erasure(session: Session, subject: User, now: datetime) -> ErasureRequest:
    """Queue a request to erase the participant's data (an open one is returned as it is).

    The participant's row is locked first, so their concurrent requests queue here; a unique
    index allows one open request per participant whatever happens.
    """
    require_participant(subject)
    lock_rows(session, User, [subject.id])
    existing = open_erasure_request(session, subject.id)
    if existing is not None:
        return existing
    request = ErasureRequest(
        user_id=subject.id,
        status=ErasureStatus.RECEIVED,
        requested_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    return request


# Where each open status may go; completed and declined requests are final.
ERASURE_TRANSITIONS = {
    ErasureStatus.RECEIVED: frozenset(
        {ErasureStatus.IN_PROGRESS, ErasureStatus.COMPLETED, ErasureStatus.DECLINED}
    ),
    ErasureStatus.IN_PROGRESS: frozenset({ErasureStatus.COMPLETED, ErasureStatus.DECLINED}),
}


def set_erasure_status(
    session: Session,
    actor: User,
    request: ErasureRequest,
    status: ErasureStatus,
    note: str | None,
    now: datetime,
) -> None:
    """Staff move an erasure request on; declining needs a note the participant reads."""
    require_staff(actor)
    if status not in ERASURE_TRANSITIONS.get(request.status, frozenset()):
        raise ErasureRefused(
            f"A request that is “{request.status.label.split(':')[0].lower()}” cannot become "
            f"“{status.label.split(':')[0].lower()}”."
        )
    note = (note or "").strip() or None
    if status == ErasureStatus.DECLINED and not note:
        raise ErasureRefused("Explain to the participant why the request is not carried out.")
    request.status = status
    request.updated_at = now
    request.handled_by_id = actor.id
    if note:
        request.note = note
