"""Signals other packages subscribe to (blinker).

A package that *emits* a signal declares it here; a package that *reacts* connects a receiver
at composition time (``create_app``). Receivers run synchronously, inside the emitter's
database transaction: they may add rows to the session they are given, but they must not
commit, roll back or send email themselves (queue an outbox row instead), so that a failure
rolls the whole change back and nothing is announced for a change that was not saved.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

consent_changed = _signals.signal(
    "consent-changed",
    doc="""A participant's consent changed (one or more scope decisions were recorded).

    Sent by ``engage.consent.decisions`` after the events, current choices and receipt are
    added to the session, before the caller commits.

    sender: the string ``"engage.consent"``.
    kwargs:
      session: the SQLAlchemy session holding the change (add rows to it; never commit).
      change: an ``engage.consent.decisions.ConsentChange`` with ``user_id``, ``pseudonym``,
        ``receipt_id``, ``form_version_id``, ``method``, ``actor_id`` (staff recording a paper
        form, else None), ``occurred_at`` and ``scopes`` (a tuple of ``ScopeChange``:
        ``code``, ``before`` and ``after`` decisions, ``was_permitted`` and ``is_permitted``).
    """,
)

registry_enrolments_changed = _signals.signal(
    "registry-enrolments-changed",
    doc="""A participant's registry enrolments changed (added or removed).

    Sent by ``engage.accounts.services.set_enrolments`` after the enrolment rows are flushed,
    before the caller commits.

    sender: the string ``"engage.accounts"``.
    kwargs:
      session: the SQLAlchemy session holding the change (add rows to it; never commit).
      user_id: the participant whose enrolments changed.
    """,
)
