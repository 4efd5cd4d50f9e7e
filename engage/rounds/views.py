"""Public pages of priority-setting rounds: the list, a round's shortlist and ballot, and a
closed round's results with its anonymised ballot file.

Results are public, to visitors too: they name no person (ballots are counted anonymously,
and a group with fewer than five ballots shows no ranking of its own), and the James Lind
Alliance way is to publish the priorities openly.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, abort, render_template, url_for
from flask_login import current_user

from engage.accounts.models import Role, User
from engage.db import get_session
from engage.rounds import ballots, queries
from engage.rounds.forms import BallotForm, ballot_form
from engage.rounds.models import PriorityRound
from engage.rounds.rules import RoundError
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, refused, saved

rounds = Blueprint("rounds", __name__, url_prefix="/rounds")
TAKING_PART = (Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION)


def _viewer() -> User | None:
    """The signed-in person's row in this request's session, or None."""
    if not current_user.is_authenticated:
        return None
    return get_session().get(User, current_user.id)


@rounds.route("")
def list_rounds():
    """Open, upcoming and closed rounds."""
    viewer = _viewer()
    return render_template(
        "rounds/list.html",
        lists=queries.round_lists(get_session(), viewer, utcnow()),
        takes_part=viewer is not None and viewer.role in TAKING_PART,
    )


def _ballot_page(page: queries.BallotPage, form: BallotForm | None = None):
    """The round's page; ``form`` was sent with errors and is shown again with them (a 400)."""
    failed = form is not None
    if form is None and page.can_rank:
        form = ballot_form(
            page.shortlist, page.rank_choices, [entry.topic_id for entry in page.saved]
        )
    return (
        render_template("rounds/round.html", page=page, form=form, failed=failed),
        400 if failed else 200,
    )


def _page_or_404(round_id: int) -> queries.BallotPage:
    page = queries.ballot_page(get_session(), round_id, _viewer(), utcnow())
    if page is None:
        abort(404)
    return page


@rounds.route("/<int:round_id>")
def round_page(round_id: int):
    """The round's question, its shortlist with each evidence check, and the ballot."""
    return _ballot_page(_page_or_404(round_id))


@rounds.route("/<int:round_id>/ballot", methods=["POST"])
@roles_required(*TAKING_PART)
def save_ballot(round_id: int):
    """Save the signed-in person's ranking (replacing the one saved before)."""
    page = _page_or_404(round_id)
    here = url_for("rounds.round_page", round_id=round_id)
    if page.closed_reason is not None:
        return refused(page.closed_reason, here)
    form = ballot_form(page.shortlist, page.rank_choices)
    if not form.validate():
        return _ballot_page(page, form)
    ranking = form.ranking()
    user = _viewer()
    assert user is not None  # roles_required

    def explain(exc: RoundError):
        return refused(str(exc), here + "#ballot")

    count = len(ranking)
    return commit_or_explain(
        lambda session: ballots.cast_ballot(session, user, round_id, ranking, utcnow()),
        errors=RoundError,
        explain=explain,
        done=lambda _ballot: saved(
            f"Your ranking is saved: {count} topic{'' if count == 1 else 's'}.",
            here + "#my-ranking",
        ),
    )


@rounds.route("/<int:round_id>/results")
def results(round_id: int):
    """A closed round's result: the combined Top N, each group's ranking, and the final
    workshop's agreed Top 10 once recorded."""
    page = queries.results_page(get_session(), round_id)
    if page is None:
        abort(404)
    return render_template("rounds/results.html", page=page)


@rounds.route("/<int:round_id>/ballots.json")
def ballot_file(round_id: int):
    """The closed round's anonymised ballots and result, to recompute the tally with."""
    # The file as stored, as text: megabytes for a large round, never parsed and written again.
    row = get_session().execute(
        sa.select(
            PriorityRound.closed_at,
            PriorityRound.result,
            sa.cast(PriorityRound.ballot_file, sa.Text).label("body"),
        ).where(PriorityRound.id == round_id)
    ).first()
    if row is None or row.closed_at is None or row.body is None or row.body == "null":
        abort(404)
    is_staff = current_user.is_authenticated and current_user.is_staff
    if not (is_staff or queries.ballots_are_public(row.result)):
        abort(404)  # a group too small to publish: staff only (see queries.ballots_are_public)
    return Response(
        row.body + "\n",
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="round-{round_id}-ballots.json"'
        },
    )
