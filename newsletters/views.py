"""Subscribers' pages (blueprint ``newsletters``, /newsletters): preferences for account
holders, public sign-up with double opt-in, the confirmation page, the unsubscribe page; and
on ``newsletters_hooks`` (no CSRF: the signed token is the proof) the RFC 8058 one-click
unsubscribe POST of mail programs and the List-Unsubscribe mailto's inbound-parse hook.

Links in emails open pages that change nothing on GET (mail scanners fetch every link); the
change is a POST from the page's button.
"""

from __future__ import annotations

import re

from flask import (
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from engage.db import get_session
from engage.extensions import limiter
from engage.timeutil import utcnow
from engage.views import commit_or_explain, saved, signed_in_person
from newsletters import lists
from newsletters.blueprints import newsletters, newsletters_hooks
from newsletters.errors import NewsletterError
from newsletters.list_forms import ButtonForm, PreferencesForm, SubscribeForm
from newsletters.tokens import CONFIRM_MAX_AGE_SECONDS, BadToken

DEFAULT_SIGN_UP_LIMIT = "5 per minute;30 per hour"
# What a one-click unsubscribe POST carries (RFC 8058, section 3.1).
ONE_CLICK_BODY = ("List-Unsubscribe", "One-Click")
_MAILTO_SUBJECT = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_.=-]{1,300})", re.IGNORECASE)


def _sign_up_limit() -> str:
    return current_app.config.get("NEWSLETTER_SIGN_UP_RATE_LIMIT", DEFAULT_SIGN_UP_LIMIT)


def _post_only(_limit: object = None) -> bool:
    """Rate limits count form submissions, not page views."""
    return request.method != "POST"


def _confirm_max_age() -> int:
    return int(current_app.config.get("NEWSLETTER_CONFIRM_MAX_AGE", CONFIRM_MAX_AGE_SECONDS))


def _bad_link(exc: BadToken, *, unsubscribe: bool = False):
    """The 400 page of a link that was altered, forged or has expired."""
    return (
        render_template(
            "newsletters/list_link_invalid.html", message=str(exc), unsubscribe=unsubscribe
        ),
        400,
    )


# Preferences (account holders) -----------------------------------------------------------
@newsletters.route("/preferences", methods=["GET", "POST"])
def preferences():
    """A signed-in person chooses their newsletters; visitors are sent to sign in (the
    sign-up page for people without an account links here and back)."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
    user = signed_in_person()
    session = get_session()
    form = PreferencesForm()
    if form.validate_on_submit():

        def refused(exc: NewsletterError):
            form.form_errors.append(exc.message)
            return _preferences_page(form, set(form.lists.data)), 400

        return commit_or_explain(
            lambda s: lists.set_subscriptions(s, user, form.lists.data, utcnow()),
            errors=NewsletterError,
            explain=refused,
            done=lambda change: saved(
                _change_message(change), url_for("newsletters.preferences", _anchor="lists")
            ),
        )
    if form.errors:
        return _preferences_page(form, set(form.lists.data or [])), 400
    ticked = {c.mailing_list.id for c in lists.preferences(session, user) if c.is_subscribed}
    return _preferences_page(form, ticked)


def _preferences_page(form: PreferencesForm, ticked: set[int]) -> str:
    choices = lists.preferences(get_session(), signed_in_person())
    return render_template(
        "newsletters/preferences.html", form=form, choices=choices, ticked=ticked
    )


def _change_message(change: lists.PreferenceChange) -> str:
    parts = []
    if change.subscribed:
        parts.append(f"You are now subscribed to {_names(change.subscribed)}.")
    if change.unsubscribed:
        parts.append(f"You are unsubscribed from {_names(change.unsubscribed)}.")
    return " ".join(parts) or "Nothing changed: these were already your newsletters."


def _names(names: list[str]) -> str:
    quoted = [f"“{name}”" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# Public sign-up ---------------------------------------------------------------------------
@newsletters.route("/subscribe", methods=["GET", "POST"])
@limiter.limit(_sign_up_limit, exempt_when=_post_only)
def subscribe():
    """Sign up to public newsletters without an account (double opt-in)."""
    session = get_session()
    form = SubscribeForm()
    if form.validate_on_submit():
        try:
            _sign_up_once(session, form)
        except NewsletterError as exc:
            session.rollback()
            form.form_errors.append(exc.message)
        else:
            return redirect(url_for("newsletters.check_email", _anchor="check-email"), code=303)
    offered = lists.public_lists(session)
    return (
        render_template(
            "newsletters/subscribe.html",
            form=form,
            offered=offered,
            ticked=set(form.lists.data or []),
        ),
        400 if form.errors else 200,
    )


def _sign_up_once(session, form: SubscribeForm) -> None:
    """Sign up and commit; two first sign-ups of one address at once both find no subscriber,
    and the loser's insert (a unique address) is answered by signing up again."""
    for attempt in range(2):
        try:
            lists.sign_up(
                session,
                name=form.name.data,
                email=form.email.data,
                language=form.language.data,
                list_ids=form.lists.data,
                now=utcnow(),
            )
            session.commit()
            return
        except IntegrityError:
            session.rollback()
            if attempt:
                raise


@newsletters.route("/subscribe/check-email")
def check_email():
    """The same answer whether or not the address was already subscribed."""
    return render_template("newsletters/list_check_email.html")


# Confirmation -----------------------------------------------------------------------------
@newsletters.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    """GET shows what the link confirms (and changes nothing); the page's button POSTs here."""
    form = ButtonForm()
    if form.validate_on_submit():

        def confirmed(outcome: lists.Confirmation):
            message = (
                "Thank you: your subscription is confirmed."
                if outcome.pending
                else "Your subscription was already confirmed; nothing needed changing."
            )
            return saved(
                message, url_for("newsletters.confirm", token=token, _anchor="subscription")
            )

        return commit_or_explain(
            lambda s: lists.confirm(s, token, utcnow(), max_age=_confirm_max_age()),
            errors=BadToken,
            explain=_bad_link,
            done=confirmed,
        )
    try:
        state = lists.read_confirmation(get_session(), token, max_age=_confirm_max_age())
    except BadToken as exc:
        return _bad_link(exc)
    return render_template("newsletters/confirm.html", state=state, form=form, token=token)


# Unsubscribing ----------------------------------------------------------------------------
@newsletters.route("/unsubscribe/<token>")
def unsubscribe(token: str):
    """The page an emailed unsubscribe link opens: it names the list and has the button."""
    try:
        state = lists.read_unsubscribe(get_session(), token)
    except BadToken as exc:
        return _bad_link(exc, unsubscribe=True)
    template = "unsubscribe.html" if state.was_subscribed else "unsubscribed.html"
    return render_template(f"newsletters/{template}", state=state, form=ButtonForm(), token=token)


@newsletters.route("/unsubscribe/<token>/confirm", methods=["POST"])
def unsubscribe_confirm(token: str):
    """The unsubscribe page's button: off the list at once."""

    def done(state: lists.Unsubscription):
        name = f"“{state.list_name}”" if state.list_name else "this list"
        return saved(
            f"You are unsubscribed from {name}."
            if state.was_subscribed
            else f"You were already unsubscribed from {name}.",
            url_for("newsletters.unsubscribe", token=token, _anchor="unsubscribed"),
        )

    return commit_or_explain(
        lambda s: lists.unsubscribe(s, token, utcnow()),
        errors=BadToken,
        explain=lambda exc: _bad_link(exc, unsubscribe=True),
        done=done,
    )


@newsletters.route("/unsubscribe/<token>/all", methods=["POST"])
def unsubscribe_everything(token: str):
    """The unsubscribe page's second button: off every list of the link's subscriber."""

    def change(session):
        state = lists.read_unsubscribe(session, token)
        return lists.unsubscribe_all(session, state.subscriber_id, utcnow())

    return commit_or_explain(
        change,
        errors=BadToken,
        explain=lambda exc: _bad_link(exc, unsubscribe=True),
        done=lambda _count: saved(
            "You are unsubscribed from every newsletter. We will not email you newsletters "
            "again unless you sign up.",
            url_for("newsletters.unsubscribe", token=token, _anchor="unsubscribed"),
        ),
    )


@newsletters_hooks.route("/unsubscribe/<token>", methods=["POST"])
def one_click_unsubscribe(token: str):
    """RFC 8058 one-click unsubscribe, posted by a mail program (no cookie, no CSRF token:
    the signed token is the proof). Answers in plain text."""
    name, value = ONE_CLICK_BODY
    if request.form.get(name) != value:
        return _plain("This is not a one-click unsubscribe request.", 400)
    try:
        lists.unsubscribe(get_session(), token, utcnow())
    except BadToken as exc:
        get_session().rollback()
        return _plain(str(exc), 400)
    get_session().commit()
    return _plain("You are unsubscribed.", 200)


@newsletters_hooks.route("/inbound-unsubscribe", methods=["POST"])
def inbound_unsubscribe():
    """SendGrid Inbound Parse posts the email sent to the List-Unsubscribe mailto; its subject
    reads "unsubscribe <token>". The answer is 200 whatever it held (nothing to learn from
    it, and the provider would retry anything else)."""
    match = _MAILTO_SUBJECT.search(request.form.get("subject", "")[:1000])
    if match:
        session = get_session()
        try:
            lists.unsubscribe(session, match.group(1), utcnow())
        except BadToken:
            session.rollback()
        else:
            session.commit()
    return _plain("OK", 200)


def _plain(text: str, status: int) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")
