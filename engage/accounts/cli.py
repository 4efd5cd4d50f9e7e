"""``engage users ...`` commands."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from engage.accounts import services, sessions, two_factor
from engage.choices import LANGUAGE_CHOICES, country_names
from engage.db import get_session
from engage.roles import Role
from engage.timeutil import utcnow


@click.group("users")
def users_group() -> None:
    """Accounts."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")


@users_group.command("create")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role if r != Role.CUSTODIAN]),
    required=True,
    help="Custodians join by request and staff approval.",
)
@click.option("--email", required=True)
@click.option("--name", "display_name", default=None, help="Display name (default: from email).")
@click.option("--country", default="GB", show_default=True, help="ISO 3166-1 alpha-2 code.")
@click.option(
    "--language",
    default="en",
    show_default=True,
    type=click.Choice([code for code, _ in LANGUAGE_CHOICES]),
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def users_create(
    role: str,
    email: str,
    display_name: str | None,
    country: str,
    language: str,
    password_stdin: bool,
) -> None:
    """Create a verified account (the password is prompted for, never an argument)."""
    country = country.upper()
    if country not in country_names() or country == "INT":
        raise click.BadParameter(
            f"{country!r} is not an ISO 3166-1 alpha-2 code.", param_hint="--country"
        )
    password = _read_password(password_stdin)
    session = get_session()
    try:
        user = services.create_user_by_cli(
            session,
            email=email,
            password=password,
            role=Role(role),
            display_name=(display_name or email.split("@")[0])[:80],
            country=country,
            language=language,
            now=utcnow(),
        )
    except services.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Created {user.role.value} account {user.email} (id {user.id}).")


@users_group.command("reset-two-factor")
@click.option("--email", required=True, help="The account's email address.")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@with_appcontext
def users_reset_two_factor(email: str, yes: bool) -> None:
    """Clear a lost authenticator: the person signs in with their password and sets up a new
    one (staff and custodians must, before they are signed in). Every session ends. Check who
    is asking, out of band, before running this."""
    session = get_session()
    user = services.find_user_by_email(session, email)
    if user is None:
        raise click.ClickException("No account has that email address.")
    if not yes:
        click.confirm(
            f"Clear two-step sign-in of {user.email} and sign them out everywhere?", abort=True
        )
    now = utcnow()
    two_factor.reset_by_operator(session, user, now)
    ended = sessions.end_all(session, user.id, now, sessions.EndReason.TWO_FACTOR_RESET)
    session.commit()
    click.echo(f"Two-step sign-in cleared for account {user.id}; {ended} session(s) ended.")
