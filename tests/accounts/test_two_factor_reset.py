"""``engage users reset-two-factor``: the way back for someone who lost their authenticator."""

from __future__ import annotations

import sqlalchemy as sa

from engage.accounts.models import RecoveryCode, Role, User, UserSession
from engage.audit import AuditEvent
from engage.db import Database
from tests.conftest import PASSWORD, post_form, sign_in


def test_an_operator_clears_a_lost_authenticator_and_the_owner_enrols_again(app, make_user):
    staff = make_user(Role.STAFF)
    signed_in = app.test_client()
    sign_in(signed_in, staff)
    assert signed_in.get("/account").status_code == 200

    result = app.test_cli_runner().invoke(
        args=["users", "reset-two-factor", "--email", staff.email, "--yes"]
    )
    assert result.exit_code == 0, result.output
    assert "1 session(s) ended" in result.output

    db_session = Database.new_session(app)
    user = db_session.get(User, staff.id)
    assert (user.totp_secret, user.totp_enabled_at, user.totp_last_counter) == (None, None, None)
    assert (
        db_session.scalar(
            sa.select(sa.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == staff.id)
        )
        == 0
    )
    assert db_session.scalars(
        sa.select(UserSession.ended_reason).where(UserSession.user_id == staff.id)
    ).all() == ["two-factor-reset"]
    assert (
        "two_factor_reset_by_operator"
        in db_session.scalars(
            sa.select(AuditEvent.action).where(AuditEvent.subject_user_id == staff.id)
        ).all()
    )
    db_session.close()

    # The old browser is signed out; the password alone leads to setting up a new authenticator.
    assert signed_in.get("/account").status_code == 302
    fresh = app.test_client()
    response = post_form(fresh, "/sign-in", {"email": staff.email, "password": PASSWORD})
    assert response.status_code == 302
    assert "/sign-in/two-factor/set-up" in response.headers["Location"]
    assert fresh.get("/account").status_code == 302  # not signed in until enrolled


def test_an_unknown_address_changes_nothing(app):
    result = app.test_cli_runner().invoke(
        args=["users", "reset-two-factor", "--email", "nobody@example.org", "--yes"]
    )
    assert result.exit_code == 1
    assert "No account has that email address." in result.output
