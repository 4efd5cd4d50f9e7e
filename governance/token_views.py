"""The custodian's API token page (/governance/tokens): list my tokens, create one (shown
once, on the answer to the creating request, never stored or flashed) and revoke one.

Its routes belong to the ``governance`` blueprint (:mod:`governance.views`);
:mod:`governance.api` imports this module so they are added before the blueprint is
registered.
"""

from __future__ import annotations

from flask import abort, render_template, url_for

from engage.db import get_session
from engage.security import approved_custodian_required, sign_in_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, refused, saved, signed_in_person
from governance import tokens
from governance.errors import GovernanceError
from governance.token_forms import CreateTokenForm, RevokeTokenForm
from governance.views import governance


def _page(form: CreateTokenForm, new_token: tokens.NewToken | None = None, status: int = 200):
    session = get_session()
    me = signed_in_person()
    return (
        render_template(
            "governance/tokens.html",
            form=form,
            tokens=tokens.tokens_of(session, me.id),
            new_token=new_token,
            max_active=tokens.MAX_ACTIVE_TOKENS,
        ),
        status,
    )


@governance.route("/tokens", methods=["GET", "POST"])
@approved_custodian_required
def tokens_page():
    """My API tokens, and a form to create one (its secret is shown on this answer only)."""
    form = CreateTokenForm()
    if not form.validate_on_submit():
        return _page(form, status=400 if form.errors else 200)

    def explain(error: GovernanceError):
        form.name.errors = [*form.name.errors, str(error)]
        return _page(form, status=400)

    return commit_or_explain(
        lambda session: tokens.create_token(session, signed_in_person(), form.name.data, utcnow()),
        errors=GovernanceError,
        explain=explain,
        done=lambda new_token: _page(CreateTokenForm(formdata=None), new_token, status=201),
    )


@governance.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@sign_in_required
def revoke_token(token_id: int):
    """Revoke one of my tokens; another person's token is not found. Anyone signed in may
    revoke their own: a custodian whose approval ended can still clean up (their tokens
    already give no access)."""
    form = RevokeTokenForm()
    if not form.validate_on_submit():
        return refused("Your form expired; please try again.", url_for("governance.tokens_page"))

    def explain(_error: GovernanceError):
        abort(404)

    return commit_or_explain(
        lambda session: tokens.revoke_token(session, signed_in_person(), token_id, utcnow()),
        errors=tokens.TokenNotFound,
        explain=explain,
        done=lambda token: saved(
            f"The token “{token.name}” is revoked: it no longer opens the API.",
            url_for("governance.tokens_page", _anchor="tokens"),
        ),
    )
