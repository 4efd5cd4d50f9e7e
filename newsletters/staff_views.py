"""Staff pages of campaigns (blueprint ``newsletters_staff``, /staff/newsletters/campaigns):
the list, the editor, the preview, a test send to oneself, the schedule, pause, resume and
cancel, and the progress of a send (a JSON endpoint the page polls).

Every change goes form → service → flash → redirect through :func:`commit_or_explain`; a
refused change shows the form again with what was typed and why (400, 409 when the campaign has
moved on), or, for a button, flashes why and goes back to the campaign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from engage.choices import LANGUAGE_CHOICES, country_names
from engage.consent.queries import current_scopes
from engage.db import get_session
from engage.registries.queries import all_registries, registry_choices
from engage.roles import Role
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, page_arg, refused, saved, signed_in_person
from newsletters import campaigns, queries
from newsletters.audience import estimate as estimate_audience
from newsletters.blueprints import newsletters_staff
from newsletters.campaign_forms import (
    ONCE,
    RECURRING,
    ActionForm,
    CampaignForm,
    ConfirmForm,
    ScheduleForm,
)
from newsletters.errors import InvalidState, NewsletterError, NotFound
from newsletters.models import Campaign, CampaignStatus, ListVisibility, SendStatus
from newsletters.schedule import InvalidSchedule, describe_cron, utc_to_local

ACTIVE_SENDS = (SendStatus.SENDING, SendStatus.PAUSED)
# Sends whose progress the JSON endpoint reports (the newest; older ones are long finished).
PROGRESS_SENDS = 20
# Sends the campaign page lists (a recurring campaign may have thousands).
PAGE_SENDS = 50
# How often the campaign page asks for progress, in milliseconds (NEWSLETTER_PROGRESS_INTERVAL_MS).
PROGRESS_INTERVAL_MS = 4000


# Shared helpers ------------------------------------------------------------------------------
def _campaign(campaign_id: int) -> Campaign:
    campaign = get_session().get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def _campaign_url(campaign_id: int, anchor: str = "") -> str:
    return url_for("newsletters_staff.campaign", campaign_id=campaign_id) + anchor


def refusal_status(exc: NewsletterError) -> int:
    """404 for something gone, 409 when the campaign has moved on, else 400."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidState):
        return 409
    return 400


def _list_label(mailing_list: Any, scope_titles: dict[str, str]) -> str:
    who = "public" if mailing_list.visibility == ListVisibility.PUBLIC else "account holders"
    scope = mailing_list.required_scope
    extra = f"; needs consent to “{scope_titles.get(scope, scope)}”" if scope else ""
    archived = "; archived" if mailing_list.is_archived else ""
    return f"{mailing_list.name} ({who}{extra}{archived})"


def _editor_form(campaign: Campaign | None) -> CampaignForm:
    """The editor's form with its choices (plus what the campaign already names even if no
    longer offered, so it can be kept or dropped)."""
    session = get_session()
    current = campaigns.list_ids_of(session, campaign.id) if campaign is not None else []
    audience = (campaign.audience or {}) if campaign is not None else {}
    registries = registry_choices(session)
    offered = {registry_id for registry_id, _label in registries}
    registries += [
        (i, f"Registry {i} (no longer active)")
        for i in audience.get("registry_ids", [])
        if i not in offered
    ]
    topics = queries.audience_topics(session)
    offered = {topic_id for topic_id, _label in topics}
    topics += [
        (i, f"Topic {i} (no longer open)")
        for i in audience.get("topic_ids", [])
        if i not in offered
    ]
    titles = {scope.code: scope.title for scope in current_scopes(session)}
    data = None
    if campaign is not None and request.method == "GET":
        data = {
            "kind": campaign.kind.value,
            "subject": campaign.subject,
            "preheader": campaign.preheader,
            "body": campaign.body_markdown,
            "list_ids": current,
            **{key: audience.get(key, []) for key in campaigns.AUDIENCE_KEYS},
        }
    return CampaignForm(
        data=data,
        lists=[
            (m.id, _list_label(m, titles)) for m in queries.offered_lists(session, keep=current)
        ],
        registries=registries,
        topics=topics,
    )


def _render_editor(form: CampaignForm, campaign: Campaign | None, status: int | None = None):
    return (
        render_template("newsletters/staff/campaign_form.html", form=form, campaign=campaign),
        status or (400 if form.errors else 200),
    )


def _with_error(form: Any, exc: NewsletterError) -> Any:
    form.form_errors.append(exc.message)
    return form


# The list -----------------------------------------------------------------------------------
# The function is not called ``campaigns``: that names the services module here.
@newsletters_staff.route("/campaigns", endpoint="campaigns")
@roles_required(Role.STAFF)
def campaigns_page():
    """Every campaign, most recently changed first, with its status, kind and next run."""
    return render_template(
        "newsletters/staff/campaigns.html",
        result=queries.campaign_rows(get_session(), page_arg()),
        local_time=utc_to_local,
    )


# The editor -----------------------------------------------------------------------------------
@newsletters_staff.route("/campaigns/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_campaign():
    """Draft a campaign."""
    form = _editor_form(None)
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: campaigns.create_campaign(
                session, signed_in_person(), form.details(), utcnow()
            ),
            errors=NewsletterError,
            explain=lambda exc: _render_editor(_with_error(form, exc), None, refusal_status(exc)),
            done=lambda campaign: saved(
                "The draft is saved. Preview it and send yourself a test before scheduling it.",
                _campaign_url(campaign.id),
            ),
        )
    return _render_editor(form, None)


@newsletters_staff.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_campaign(campaign_id: int):
    """Change a draft or scheduled campaign (refused once sending has started)."""
    campaign = _campaign(campaign_id)
    if request.method == "GET" and campaign.status not in campaigns.EDITABLE:
        return refused(campaigns.why_not_editable(campaign).message, _campaign_url(campaign_id))
    form = _editor_form(campaign)
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: campaigns.update_campaign(
                session, signed_in_person(), campaign, form.details(), utcnow()
            ),
            errors=NewsletterError,
            explain=lambda exc: _render_editor(
                _with_error(form, exc), _campaign(campaign_id), refusal_status(exc)
            ),
            done=lambda _: saved("Saved.", _campaign_url(campaign_id)),
        )
    return _render_editor(form, campaign)


# One campaign ---------------------------------------------------------------------------------
def _audience_summary(session: Session, audience: dict[str, Any]) -> list[tuple[str, str]]:
    """(filter, chosen values) in words, for the campaign page."""
    if not audience:
        return []
    roles = {role.value: role.label for role in Role}
    languages = dict(LANGUAGE_CHOICES)
    registries = (
        {r.id: r.name for r in all_registries(session)} if "registry_ids" in audience else {}
    )
    topics = dict(queries.audience_topics(session)) if "topic_ids" in audience else {}
    chosen = {key: audience.get(key, []) for key in campaigns.AUDIENCE_KEYS}
    named = [
        ("Roles", [roles.get(v, v) for v in chosen["roles"]]),
        ("Countries", [country_names().get(v, v) for v in chosen["countries"]]),
        ("Languages", [languages.get(v, v) for v in chosen["languages"]]),
        ("Registries", [registries.get(v, f"Registry {v}") for v in chosen["registry_ids"]]),
        ("Supporters of", [topics.get(v, f"Topic {v}") for v in chosen["topic_ids"]]),
    ]
    return [(label, ", ".join(values)) for label, values in named if values]


def _render_campaign(campaign: Campaign, status: int = 200):
    session = get_session()
    lists = queries.campaign_lists(session, [campaign.id])[campaign.id]
    sends = queries.sends_of(session, campaign.id, limit=PAGE_SENDS)
    send_ids = [send.id for send in sends]
    editable = campaign.status in campaigns.EDITABLE
    return (
        render_template(
            "newsletters/staff/campaign.html",
            campaign=campaign,
            lists=lists,
            audience=_audience_summary(session, campaign.audience or {}),
            audience_size=estimate_audience(
                session, [m.id for m in lists], campaign.audience or {}
            )
            if editable
            else None,
            sends=sends,
            send_count=queries.count_sends(session, campaign.id)
            if len(sends) == PAGE_SENDS
            else len(sends),
            progress=queries.send_progress(session, send_ids),
            events=queries.event_counts(session, send_ids),
            active_sends=[send for send in sends if send.status in ACTIVE_SENDS],
            history=queries.status_history(session, campaign.id),
            local_time=utc_to_local,
            describe_cron=describe_cron,
            can_edit=editable,
            can_schedule=campaign.status in campaigns.SCHEDULABLE,
            can_unschedule=campaign.status == CampaignStatus.SCHEDULED,
            can_pause=campaign.status == CampaignStatus.SENDING,
            can_resume=campaign.status == CampaignStatus.PAUSED,
            can_cancel=campaign.status in campaigns.CANCELLABLE,
            test_form=ConfirmForm(formdata=None),
            unschedule_form=ConfirmForm(formdata=None),
            pause_form=ActionForm(formdata=None, prefix="pause"),
            resume_form=ActionForm(formdata=None, prefix="resume"),
            cancel_form=ActionForm(formdata=None, prefix="cancel"),
            progress_interval=current_app.config.get(
                "NEWSLETTER_PROGRESS_INTERVAL_MS", PROGRESS_INTERVAL_MS
            ),
        ),
        status,
    )


@newsletters_staff.route("/campaigns/<int:campaign_id>")
@roles_required(Role.STAFF)
def campaign(campaign_id: int):
    """A campaign: content summary, schedule, actions its status allows, its sends with their
    progress and the provider's reports, and its history."""
    return _render_campaign(_campaign(campaign_id))


@newsletters_staff.route("/campaigns/<int:campaign_id>/preview")
@roles_required(Role.STAFF)
def preview_campaign(campaign_id: int):
    """The newsletter as a recipient would read it (sanitised, the name filled in)."""
    found = _campaign(campaign_id)
    preview = queries.render_preview(found, base_url=current_app.config["BASE_URL"])
    return render_template(
        "newsletters/staff/campaign_preview.html", campaign=found, preview=preview
    )


@newsletters_staff.route("/campaigns/<int:campaign_id>/progress")
@roles_required(Role.STAFF)
def campaign_progress(campaign_id: int):
    """The campaign's status and its newest sends' delivery counts, as JSON."""
    found = _campaign(campaign_id)
    session = get_session()
    sends = queries.sends_of(session, found.id, limit=PROGRESS_SENDS)
    progress = queries.send_progress(session, [send.id for send in sends])
    response = jsonify(
        {
            "campaign_status": found.status.value,
            "campaign_status_label": found.status.label,
            "active": found.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED)
            or any(send.status in ACTIVE_SENDS for send in sends),
            "sends": [
                {
                    "id": send.id,
                    "status": send.status.value,
                    "status_label": send.status.label,
                    **progress[send.id].as_dict(),
                }
                for send in sends
            ],
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# Buttons --------------------------------------------------------------------------------------
def _button(
    campaign_id: int,
    form: Any,
    change: Callable[[Session, Campaign, Any], Any],
    message: Callable[[Any], str],
):
    """Validate the button's form, run ``change`` and go back to the campaign (focus on its
    status); a refusal is flashed there instead (nothing changed)."""
    found = _campaign(campaign_id)
    back = _campaign_url(campaign_id, "#campaign-status")
    if not form.validate_on_submit():
        problems = [error for errors in form.errors.values() for error in errors]
        return refused(" ".join(problems) or "Please try again.", back)
    return commit_or_explain(
        lambda session: change(session, found, form),
        errors=NewsletterError,
        explain=lambda exc: refused(exc.message, back),
        done=lambda outcome: saved(message(outcome), back),
    )


@newsletters_staff.route("/campaigns/<int:campaign_id>/test-send", methods=["POST"])
@roles_required(Role.STAFF)
def test_send(campaign_id: int):
    """Send the campaign as it stands to the signed-in staff member's own address."""
    return _button(
        campaign_id,
        ConfirmForm(),
        lambda session, found, _form: campaigns.test_send(
            session, signed_in_person(), found, utcnow()
        ),
        lambda queued: (
            "A test copy is on its way to your address."
            if queued
            else "A test copy of this version was already sent to you; edit the campaign to "
            "send another."
        ),
    )


@newsletters_staff.route("/campaigns/<int:campaign_id>/unschedule", methods=["POST"])
@roles_required(Role.STAFF)
def unschedule_campaign(campaign_id: int):
    """Take a scheduled campaign back to draft."""
    return _button(
        campaign_id,
        ConfirmForm(),
        lambda session, found, _form: campaigns.unschedule(
            session, signed_in_person(), found, utcnow()
        ),
        lambda _: "The schedule is taken back; the campaign is a draft again.",
    )


@newsletters_staff.route("/campaigns/<int:campaign_id>/pause", methods=["POST"])
@roles_required(Role.STAFF)
def pause_campaign(campaign_id: int):
    """Pause a sending campaign."""
    return _button(
        campaign_id,
        ActionForm(prefix="pause"),
        lambda session, found, form: campaigns.pause(
            session, signed_in_person(), found, utcnow(), form.reason.data or ""
        ),
        lambda _: "Paused: no more emails go out until you resume it.",
    )


@newsletters_staff.route("/campaigns/<int:campaign_id>/resume", methods=["POST"])
@roles_required(Role.STAFF)
def resume_campaign(campaign_id: int):
    """Resume a paused campaign."""
    return _button(
        campaign_id,
        ActionForm(prefix="resume"),
        lambda session, found, form: campaigns.resume(
            session, signed_in_person(), found, utcnow(), form.reason.data or ""
        ),
        lambda _: "Resumed: sending carries on where it stopped.",
    )


@newsletters_staff.route("/campaigns/<int:campaign_id>/cancel", methods=["POST"])
@roles_required(Role.STAFF)
def cancel_campaign(campaign_id: int):
    """Cancel a scheduled, sending or paused campaign for good."""
    return _button(
        campaign_id,
        ActionForm(prefix="cancel"),
        lambda session, found, form: campaigns.cancel(
            session, signed_in_person(), found, utcnow(), form.reason.data or ""
        ),
        lambda skipped: (
            f"Cancelled. {skipped:,} queued email(s) will not be sent." if skipped else "Cancelled."
        ),
    )


# The schedule -----------------------------------------------------------------------------------
def _schedule_form(found: Campaign) -> ScheduleForm:
    data = None
    if request.method == "GET":
        never_scheduled = found.send_at is None and found.cron is None
        data = {
            "how": RECURRING if found.cron else ONCE,
            "cron": found.cron or "",
            "timezone": current_app.config.get("NEWSLETTER_DEFAULT_TIMEZONE", "UTC")
            if never_scheduled
            else found.timezone,
            "send_at": utc_to_local(found.send_at, found.timezone).replace(tzinfo=None)
            if found.send_at
            else None,
        }
    return ScheduleForm(data=data)


def _render_schedule(found: Campaign, form: ScheduleForm, status: int | None = None):
    session = get_session()
    lists = campaigns.list_ids_of(session, found.id)
    return (
        render_template(
            "newsletters/staff/campaign_schedule.html",
            campaign=found,
            form=form,
            audience_size=estimate_audience(session, lists, found.audience or {}),
        ),
        status or (400 if form.errors else 200),
    )


def _schedule_refused(campaign_id: int, form: ScheduleForm, exc: NewsletterError):
    if isinstance(exc, InvalidSchedule) and exc.field in ("send_at", "cron", "timezone"):
        form[exc.field].errors = [*form[exc.field].errors, exc.message]
    else:
        form.form_errors.append(exc.message)
    return _render_schedule(_campaign(campaign_id), form, refusal_status(exc))


@newsletters_staff.route("/campaigns/<int:campaign_id>/schedule", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def schedule_campaign(campaign_id: int):
    """Choose when the campaign goes out: once at a local time, or on a recurrence."""
    found = _campaign(campaign_id)
    if request.method == "GET" and found.status not in campaigns.SCHEDULABLE:
        flash(
            f"This campaign is “{found.status.label.lower()}”: only a draft or a scheduled "
            "campaign can be scheduled.",
            "error",
        )
        return redirect(_campaign_url(campaign_id), code=303)
    form = _schedule_form(found)
    if not form.validate_on_submit():
        return _render_schedule(found, form)

    def change(session: Session) -> Campaign:
        actor = signed_in_person()
        if form.how.data == RECURRING:
            return campaigns.schedule_recurring(
                session, actor, found, form.cron.data, form.timezone.data, utcnow()
            )
        return campaigns.schedule_once(
            session, actor, found, form.send_at.data, form.timezone.data, utcnow()
        )

    def done(scheduled: Campaign):
        when = utc_to_local(scheduled.next_run_at, scheduled.timezone)
        return saved(
            f"Scheduled: the next send is on {when:%d %B %Y at %H:%M} ({scheduled.timezone}).",
            _campaign_url(campaign_id),
        )

    return commit_or_explain(
        change,
        errors=NewsletterError,
        explain=lambda exc: _schedule_refused(campaign_id, form, exc),
        done=done,
    )
