"""Forms of the campaign pages: the editor, the schedule and the buttons that change a
campaign's state. Each checks the shape of what was typed; :mod:`newsletters.campaigns` and
:mod:`newsletters.schedule` decide the rest (and say why in plain words)."""

from __future__ import annotations

from typing import Any

from wtforms import RadioField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields import DateTimeLocalField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from engage.choices import LANGUAGE_CHOICES, country_choices
from engage.form_fields import MultiCheckboxField
from engage.forms import Form, choices, strip
from newsletters.campaigns import (
    AUDIENCE_ROLES,
    MAX_BODY_LENGTH,
    MAX_PREHEADER_LENGTH,
    MAX_REASON_LENGTH,
    MAX_SUBJECT_LENGTH,
    CampaignDetails,
)
from newsletters.models import CampaignKind
from newsletters.schedule import timezone_choices

NOT_OFFERED = "Choose among the options listed (reload the page to see what is offered now)."
ONCE = "once"
RECURRING = "recurring"


def _length(limit: int) -> Length:
    return Length(max=limit, message=f"Use at most {limit:,} characters.")


def _checkboxes(label: str, *, coerce: Any = str, description: str = "") -> MultiCheckboxField:
    """Optional checkboxes whose refusals (not offered, not a number) read plainly."""
    return MultiCheckboxField(
        label,
        coerce=coerce,
        description=description,
        invalid_choice_message=NOT_OFFERED,
        invalid_value_message=NOT_OFFERED,
    )


class CampaignForm(Form):
    """A campaign's content, lists and audience."""

    kind = RadioField(
        "Kind of newsletter",
        choices=choices(CampaignKind.choices()),
        validators=[InputRequired(message="Choose what kind of newsletter this is.")],
        invalid_choice_message=NOT_OFFERED,
    )
    subject = StringField(
        "Subject",
        filters=[strip],
        validators=[
            DataRequired(message="Give the campaign a subject."),
            _length(MAX_SUBJECT_LENGTH),
        ],
    )
    preheader = StringField(
        "Preheader (optional)",
        filters=[strip],
        validators=[Optional(), _length(MAX_PREHEADER_LENGTH)],
        description="The short line mail programs show after the subject.",
    )
    body = TextAreaField(
        "Text of the newsletter",
        filters=[strip],
        validators=[DataRequired(message="Write the newsletter's text."), _length(MAX_BODY_LENGTH)],
        description="Markdown: *emphasis*, **bold**, lists and links. Write {name} where the "
        "reader's name goes. Other HTML is removed for safety; the preview shows what readers get.",
    )
    list_ids = MultiCheckboxField(
        "Mailing lists",
        coerce=int,
        validators=[DataRequired(message="Choose at least one mailing list.")],
        invalid_choice_message=NOT_OFFERED,
        invalid_value_message=NOT_OFFERED,
        description="Everyone confirmed on any of these lists is in the audience (once, however "
        "many of the lists they are on).",
    )
    roles = _checkboxes(
        "Only people with these roles (optional)",
        description="Roles apply to account holders: people who signed up without an account "
        "are left out when you choose any.",
    )
    countries = SelectMultipleField(
        "Only people in these countries (optional)",
        invalid_choice_message=NOT_OFFERED,
        description="Hold Ctrl (or Cmd) to choose several. Applies to account holders only.",
    )
    languages = _checkboxes("Only people who read these languages (optional)")
    registry_ids = _checkboxes("Only people enrolled in these registries (optional)", coerce=int)
    topic_ids = _checkboxes(
        "Only supporters of these research topics (optional)",
        coerce=int,
        description="A progress report reaches the people who asked for the research.",
    )

    def __init__(
        self,
        *args: Any,
        lists: list[tuple[int, str]],
        registries: list[tuple[int, str]],
        topics: list[tuple[int, str]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.list_ids.choices = choices(lists)
        self.roles.choices = choices((role.value, role.label) for role in AUDIENCE_ROLES)
        self.countries.choices = choices(country_choices())
        self.languages.choices = choices(LANGUAGE_CHOICES)
        self.registry_ids.choices = choices(registries)
        self.topic_ids.choices = choices(topics)

    def details(self) -> CampaignDetails:
        """What was typed, as the services take it."""
        return CampaignDetails(
            kind=CampaignKind(self.kind.data),
            subject=self.subject.data or "",
            preheader=self.preheader.data or "",
            body_markdown=self.body.data or "",
            list_ids=list(self.list_ids.data or []),
            audience={
                "roles": list(self.roles.data or []),
                "countries": list(self.countries.data or []),
                "languages": list(self.languages.data or []),
                "registry_ids": list(self.registry_ids.data or []),
                "topic_ids": list(self.topic_ids.data or []),
            },
        )


class ScheduleForm(Form):
    """When a campaign goes out: once at a local time, or on a cron recurrence."""

    how = RadioField(
        "How often",
        choices=choices(
            [(ONCE, "Once, at a date and time"), (RECURRING, "Repeatedly, on a schedule")]
        ),
        default=ONCE,
        validators=[InputRequired(message="Choose once or repeatedly.")],
        invalid_choice_message=NOT_OFFERED,
    )
    send_at = DateTimeLocalField(
        "Date and time (for once)",
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        validators=[Optional()],
        invalid_value_message="Give the date and time as on a calendar, e.g. 2027-01-15 09:00.",
        description="In the time zone chosen below.",
    )
    cron = StringField(
        "Schedule (for repeatedly)",
        filters=[strip],
        validators=[Optional(), _length(120)],
        description="Five parts: minute, hour, day of the month, month, day of the week. "
        "“0 9 * * mon” is every Monday at 09:00; “30 8 1 * *” the 1st of every month at 08:30. "
        "At most once an hour; days of the week as names (mon–sun).",
    )
    timezone = SelectField(
        "Time zone",
        validators=[InputRequired(message="Choose a time zone.")],
        invalid_choice_message="Choose a time zone from the list.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timezone.choices = choices(timezone_choices())

    def validate(self, extra_validators: Any = None) -> bool:
        """The part that was not chosen is ignored; the chosen one is required."""
        super().validate(extra_validators)
        if self.how.data == RECURRING:
            self.send_at.errors = []
            if not self.cron.data and not self.cron.errors:
                self.cron.errors = ["Write when the campaign repeats, e.g. “0 9 * * mon”."]
        elif self.how.data == ONCE:
            self.cron.errors = []
            if self.send_at.data is None and not self.send_at.errors:
                self.send_at.errors = ["Give the date and time it goes out."]
        return not any(field.errors for field in self)


class ActionForm(Form):
    """A button that changes a campaign's state, with an optional note for the history."""

    reason = TextAreaField(
        "Note for the history (optional)",
        filters=[strip],
        validators=[Optional(), _length(MAX_REASON_LENGTH)],
    )


class ConfirmForm(Form):
    """A button that needs nothing written (the CSRF token is all it carries)."""
