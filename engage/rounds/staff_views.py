"""Staff pages of priority-setting rounds (blueprint ``rounds_staff``, /staff/rounds): the list
of rounds, a new round, a round's page (details, shortlist with evidence checks, ballots by
group, the result once closed) and the final workshop (agreed Top 10, adoption).

Every change goes form → service → flash → redirect through :func:`commit_or_explain`; a
refused change shows the page again with what was typed and why (400, 403 for a person who
may not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, render_template, request, url_for
from sqlalchemy.orm import Session

from engage.accounts.models import Role
from engage.db import get_session
from engage.rounds import setup, workshop
from engage.rounds.models import Ballot, EvidenceStatus, PriorityRound, ShortlistItem
from engage.rounds.rules import NotAllowed, RoundError, RoundState, state
from engage.rounds.staff_forms import (
    AdoptForm,
    RemoveForm,
    RoundForm,
    ShortlistForm,
    WorkshopForm,
    workshop_form,
)
from engage.rounds.tally import RoundResult
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.topics.models import Topic, TopicStatus
from engage.views import commit_or_explain, refused, saved, signed_in_person, with_error

rounds_staff = Blueprint("rounds_staff", __name__, url_prefix="/staff/rounds")

# The most rounds the list shows (newest first), and topics the shortlist form offers.
LIST_LIMIT = 200
CANDIDATE_LIMIT = 500


def _status(exc: RoundError) -> int:
    return 403 if isinstance(exc, NotAllowed) else 400


def _round(round_id: int) -> PriorityRound:
    found = get_session().get(PriorityRound, round_id)
    if found is None:
        abort(404)
    return found


def _round_url(round_id: int, anchor: str = "") -> str:
    return url_for("rounds_staff.round_page", round_id=round_id, _anchor=anchor or None)


def _workshop_url(round_id: int, anchor: str = "") -> str:
    return url_for("rounds_staff.workshop_page", round_id=round_id, _anchor=anchor or None)


def _counts(session: Session, column: Any, round_ids: list[int]) -> dict[int, int]:
    if not round_ids:
        return {}
    return dict(
        session.execute(
            sa.select(column, sa.func.count()).where(column.in_(round_ids)).group_by(column)
        ).all()
    )


# The list -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundRow:
    """One round in the staff list."""

    round: PriorityRound
    state: RoundState
    shortlist: int
    ballots: int


@rounds_staff.route("")
@roles_required(Role.STAFF)
def index():
    """Every round (newest first) with where it stands and its counts."""
    session = get_session()
    now = utcnow()
    found = session.scalars(
        sa.select(PriorityRound)
        .order_by(PriorityRound.opens_at.desc(), PriorityRound.id.desc())
        .limit(LIST_LIMIT)
    ).all()
    ids = [r.id for r in found]
    shortlists = _counts(session, ShortlistItem.round_id, ids)
    ballots = _counts(session, Ballot.round_id, ids)
    rows = [
        RoundRow(r, state(r, now), shortlists.get(r.id, 0), ballots.get(r.id, 0)) for r in found
    ]
    return render_template("rounds/staff/index.html", rows=rows)


# A round's details ----------------------------------------------------------------------------
def _render_form(form: RoundForm, round_: PriorityRound | None, status: int | None = None):
    return (
        render_template("rounds/staff/round_form.html", form=form, round=round_),
        status or (400 if form.errors else 200),
    )


@rounds_staff.route("/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_round():
    """Create a round; its shortlist is added on its page next."""
    form = RoundForm()
    if request.method == "GET":
        form.roles.data = [choice.value for choice in form.roles.choices]
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: setup.create_round(
                session, signed_in_person(), form.details(), utcnow()
            ),
            errors=RoundError,
            explain=lambda exc: _render_form(with_error(form, exc), None, _status(exc)),
            done=lambda created: saved(
                "The round is created. Now add the topics of its shortlist.",
                _round_url(created.id, "shortlist"),
            ),
        )
    return _render_form(form, None)


@rounds_staff.route("/<int:round_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_round(round_id: int):
    """Change an upcoming round's details."""
    round_ = _round(round_id)
    if not setup.can_change_details(get_session(), round_, utcnow()):
        return refused(
            "This round has opened, so its details can no longer change.",
            _round_url(round_id, "round-details"),
        )
    data = None
    if request.method == "GET":
        data = {
            "title": round_.title,
            "question": round_.question,
            "roles": [role for group in round_.groups for role in group["roles"]],
            "max_ranks": round_.max_ranks,
            "opens_at": round_.opens_at,
            "closes_at": round_.closes_at,
        }
    form = RoundForm(data=data)
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: setup.update_round(
                session, signed_in_person(), round_, form.details(), utcnow()
            ),
            errors=RoundError,
            explain=lambda exc: _render_form(
                with_error(form, exc), _round(round_id), _status(exc)
            ),
            done=lambda _: saved(
                "The round's details are saved.", _round_url(round_id, "round-details")
            ),
        )
    return _render_form(form, round_)


# A round's page -------------------------------------------------------------------------------
def _shortlist_rows(session: Session, round_id: int) -> list[tuple[ShortlistItem, str]]:
    return list(
        session.execute(
            sa.select(ShortlistItem, Topic.title)
            .join(Topic, Topic.id == ShortlistItem.topic_id)
            .where(ShortlistItem.round_id == round_id)
            .order_by(ShortlistItem.id)
        ).all()
    )


def _candidates(session: Session, round_id: int) -> list[tuple[int, str]]:
    """(id, title) of shortlisted topics not yet on the round's shortlist, by title."""
    on_list = sa.select(ShortlistItem.topic_id).where(ShortlistItem.round_id == round_id)
    return [
        (row.id, row.title)
        for row in session.execute(
            sa.select(Topic.id, Topic.title)
            .where(Topic.status == TopicStatus.SHORTLISTED, Topic.id.not_in(on_list))
            .order_by(Topic.title, Topic.id)
            .limit(CANDIDATE_LIMIT)
        )
    ]


def _group_counts(session: Session, round_: PriorityRound) -> list[tuple[str, int]]:
    """(group label, ballots) of each of the round's groups, in the round's order."""
    counts = dict(
        session.execute(
            sa.select(Ballot.group_code, sa.func.count())
            .where(Ballot.round_id == round_.id)
            .group_by(Ballot.group_code)
        ).all()
    )
    return [(group["label"], counts.get(group["code"], 0)) for group in round_.groups]


def _render_round(
    round_: PriorityRound, status: int = 200, *, shortlist_form: ShortlistForm | None = None
):
    """The round's page; ``shortlist_form`` is the add form as typed when it was refused."""
    session = get_session()
    now = utcnow()
    current = state(round_, now)
    rows = _shortlist_rows(session, round_.id)
    candidates = _candidates(session, round_.id) if current == RoundState.UPCOMING else []
    form = shortlist_form or ShortlistForm(formdata=None, topics=candidates)
    return (
        render_template(
            "rounds/staff/round.html",
            round=round_,
            state=current,
            rows=rows,
            candidates=candidates,
            form=form,
            failed=shortlist_form,
            can_edit=setup.can_change_details(session, round_, now),
            group_counts=_group_counts(session, round_),
            result=RoundResult.from_json(round_.result) if round_.result else None,
        ),
        status,
    )


@rounds_staff.route("/<int:round_id>")
@roles_required(Role.STAFF)
def round_page(round_id: int):
    """A round: details, shortlist with evidence checks, ballots by group, the result."""
    return _render_round(_round(round_id))


@rounds_staff.route("/<int:round_id>/shortlist", methods=["POST"])
@roles_required(Role.STAFF)
def add_to_shortlist(round_id: int):
    """Add a shortlisted topic to an upcoming round with its evidence check."""
    round_ = _round(round_id)
    form = ShortlistForm(topics=_candidates(get_session(), round_id))
    if not form.validate_on_submit():
        return _render_round(round_, 400, shortlist_form=form)

    def change(session: Session) -> int:
        item = setup.add_to_shortlist(
            session,
            signed_in_person(),
            round_,
            form.topic_id.data,
            EvidenceStatus(form.evidence_status.data),
            form.evidence_note.data or "",
            form.evidence_url.data or "",
            utcnow(),
        )
        return item.topic_id

    return commit_or_explain(
        change,
        errors=RoundError,
        explain=lambda exc: _render_round(
            _round(round_id), _status(exc), shortlist_form=with_error(form, exc)
        ),
        done=lambda topic_id: saved(
            "The topic is added to the shortlist.", _round_url(round_id, f"shortlist-{topic_id}")
        ),
    )


@rounds_staff.route("/<int:round_id>/shortlist/remove", methods=["POST"])
@roles_required(Role.STAFF)
def remove_from_shortlist(round_id: int):
    """Take a topic off an upcoming round's shortlist."""
    round_ = _round(round_id)
    form = RemoveForm()
    back = _round_url(round_id, "shortlist")
    if not form.validate_on_submit():
        return refused(
            "Not removed: the page did not say which topic. Reload it and try again.", back
        )
    return commit_or_explain(
        lambda session: setup.remove_from_shortlist(
            session, signed_in_person(), round_, form.topic_id.data, utcnow()
        ),
        errors=RoundError,
        explain=lambda exc: refused(f"Not removed: {exc}", back),
        done=lambda _: saved("The topic is removed from the shortlist.", back),
    )


# The final workshop ---------------------------------------------------------------------------
def _titles(session: Session, topic_ids: list[int]) -> dict[int, tuple[str, TopicStatus]]:
    if not topic_ids:
        return {}
    return {
        row.id: (row.title, row.status)
        for row in session.execute(
            sa.select(Topic.id, Topic.title, Topic.status).where(Topic.id.in_(topic_ids))
        )
    }


@dataclass(frozen=True)
class WorkshopView:
    """What the workshop page shows besides its forms."""

    result: RoundResult
    topics: dict[int, tuple[str, TopicStatus]]  # every shortlist topic: (title, status)
    agreed: list[Any]  # RoundAgreedItem rows, in order
    survey: dict[int, int]  # topic id -> its place in the survey's Top N


def _workshop_view(session: Session, round_: PriorityRound) -> WorkshopView:
    result = RoundResult.from_json(round_.result)
    return WorkshopView(
        result=result,
        topics=_titles(session, list(result.shortlist)),
        agreed=workshop.agreed_items(session, round_.id),
        survey=workshop.survey_positions(round_),
    )


def _shortlist_choices(view: WorkshopView) -> list[tuple[int, str]]:
    """(id, title) of the round's shortlist topics, in shortlist order."""
    return [(tid, view.topics[tid][0]) for tid in view.result.shortlist if tid in view.topics]


def _adoptable(view: WorkshopView) -> list[tuple[int, str]]:
    """(id, title) of the agreed topics still shortlisted (not yet adopted), in agreed order."""
    return [
        (item.topic_id, view.topics[item.topic_id][0])
        for item in view.agreed
        if view.topics.get(item.topic_id, ("", None))[1] == TopicStatus.SHORTLISTED
    ]


def _fresh_forms(view: WorkshopView, round_: PriorityRound) -> tuple[WorkshopForm, AdoptForm]:
    """The workshop forms as the page first shows them: the agreed list as recorded, or else
    the survey's Top N to start from."""
    data: dict[str, Any] = {"note": round_.workshop_note}
    chosen = (
        [(item.topic_id, item.change_reason) for item in view.agreed]
        if view.agreed
        else [(item.topic_id, "") for item in view.result.top()]
    )
    for n, (topic_id, reason) in enumerate(chosen, start=1):
        data[f"place_{n}"], data[f"reason_{n}"] = str(topic_id), reason
    agreed_form = workshop_form(
        round_.max_ranks, _shortlist_choices(view), formdata=None, data=data
    )
    return agreed_form, AdoptForm(formdata=None, topics=_adoptable(view))


def _render_workshop(
    round_: PriorityRound,
    status: int = 200,
    *,
    agreed_form: WorkshopForm | None = None,
    adopt_form: AdoptForm | None = None,
):
    """The workshop page; a form given is shown as typed (it was refused)."""
    session = get_session()
    view = _workshop_view(session, round_)
    fresh_agreed, fresh_adopt = _fresh_forms(view, round_)
    return (
        render_template(
            "rounds/staff/workshop.html",
            round=round_,
            view=view,
            form=agreed_form or fresh_agreed,
            adopt_form=adopt_form or fresh_adopt,
            failed=agreed_form or adopt_form,
            voters=len(workshop.voter_ids(session, round_.id)),
        ),
        status,
    )


def _closed_round(round_id: int) -> tuple[Any, Any]:
    """(the round, None), or (None, the answer) for a round not closed yet (back to its
    page)."""
    round_ = _round(round_id)
    if state(round_, utcnow()) != RoundState.CLOSED or round_.result is None:
        return None, refused(
            "The round has not closed yet: the workshop's Top 10 is recorded after the survey "
            "result is published.",
            _round_url(round_id, "round-details"),
        )
    return round_, None


@rounds_staff.route("/<int:round_id>/workshop", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def workshop_page(round_id: int):
    """The survey's Top N and the final workshop's agreed Top 10, with a reason per change."""
    round_, answer = _closed_round(round_id)
    if answer is not None:
        return answer
    if request.method == "GET":
        return _render_workshop(round_)
    form = workshop_form(
        round_.max_ranks, _shortlist_choices(_workshop_view(get_session(), round_))
    )
    if not form.validate_on_submit():
        return _render_workshop(round_, 400, agreed_form=form)

    def explain(exc: RoundError):
        if isinstance(exc, workshop.ReasonRequired):
            form[f"reason_{exc.position}"].errors = [str(exc)]
        else:
            with_error(form, exc)
        return _render_workshop(_round(round_id), _status(exc), agreed_form=form)

    return commit_or_explain(
        lambda session: workshop.record_workshop(
            session, signed_in_person(), round_, form.agreed(), form.note.data or "", utcnow()
        ),
        errors=RoundError,
        explain=explain,
        done=lambda items: saved(
            f"The workshop's Top {len(items)} is saved and published beside the survey result.",
            _workshop_url(round_id, "agreed"),
        ),
    )


@rounds_staff.route("/<int:round_id>/adopt", methods=["POST"])
@roles_required(Role.STAFF)
def adopt(round_id: int):
    """Mark topics of the agreed Top 10 adopted for research, and tell the people concerned."""
    round_, answer = _closed_round(round_id)
    if answer is not None:
        return answer
    form = AdoptForm(topics=_adoptable(_workshop_view(get_session(), round_)))
    if not form.validate_on_submit():
        return _render_workshop(round_, 400, adopt_form=form)

    def done(outcome: workshop.AdoptionOutcome):
        message = f"{len(outcome.adopted)} topic(s) marked adopted for research."
        if outcome.voters_told:
            message += f" {outcome.voters_told} people who ranked will be emailed."
        return saved(message, _workshop_url(round_id, "adopt"))

    return commit_or_explain(
        lambda session: workshop.adopt_topics(
            session, signed_in_person(), round_, form.topic_ids.data, utcnow()
        ),
        errors=RoundError,
        explain=lambda exc: _render_workshop(
            _round(round_id), _status(exc), adopt_form=with_error(form, exc)
        ),
        done=done,
    )
