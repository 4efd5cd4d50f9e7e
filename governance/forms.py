"""Governance forms: a proposal's details (proposers), the decisions a registry's custodians
record, and the proposer's answers. Each checks only the shape of the input; the services in
:mod:`governance.proposals` and :mod:`governance.decisions` check the rules."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.fields import DateTimeLocalField
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    ValidationError,
)

from engage.choices import LANGUAGE_CHOICES
from engage.form_fields import MultiCheckboxField
from engage.forms import Form, choices, strip
from engage.timeutil import utcnow
from governance.decisions import MAX_TEXT_LENGTH
from governance.models import AnalysisMode
from governance.proposal_details import TEXT_LIMITS, ProposalDetails
from governance.proposals import MAX_REASON_LENGTH

# Deadlines further ahead than this are surely a typing slip (and would overflow date sums).
MAX_DEADLINE_AHEAD = timedelta(days=5 * 366)


def _optional_id(value: object) -> int | None:
    """A select's value as an id; the empty choice means none."""
    if value in ("", None):
        return None
    return int(value)  # type: ignore[call-overload]


def _text(label: str, name: str, missing: str, *, area: bool = False, **kwargs: Any):
    """A required text field capped at the column's (or summary's) size."""
    limit = TEXT_LIMITS[name]
    field_class = TextAreaField if area else StringField
    return field_class(
        label,
        filters=[strip],
        validators=[
            DataRequired(message=missing),
            Length(max=limit, message=f"Use at most {limit:,} characters."),
        ],
        **kwargs,
    )


class ProposalForm(Form):
    """Draft a research project proposal, or change a draft or a returned proposal."""

    title = _text("Project title", "title", "Give the project a title.")
    lead_researcher = _text(
        "Lead researcher", "lead_researcher", "Name the researcher who leads the project."
    )
    institution = _text("Institution", "institution", "Name the lead researcher's institution.")
    sponsor = _text("Sponsor or funder", "sponsor", "Name who pays for the project (or “none”).")
    plain_summary = _text(
        "Summary in plain language",
        "plain_summary",
        "Write a summary that people with MS can read.",
        area=True,
        description="Short sentences and everyday words: people with MS and their families "
        "read this. You can use *emphasis*, lists and links (Markdown).",
    )
    scientific_summary = _text(
        "Scientific summary",
        "scientific_summary",
        "Write the scientific summary for the registries.",
        area=True,
        description="Aims, design and analysis plan, for the registries' custodians (Markdown).",
    )
    language = SelectField(
        "Language of the plain-language summary",
        choices=choices(LANGUAGE_CHOICES),
        default="en",
        validators=[InputRequired(message="Choose the summary's language.")],
    )
    analysis_mode = RadioField(
        "How the data is analysed",
        choices=choices(AnalysisMode.choices()),
        validators=[InputRequired(message="Choose pooled or federated analysis.")],
    )
    ethics_reference = _text(
        "Ethics approval reference",
        "ethics_reference",
        "Give the reference of the project's ethics approval.",
    )
    topic_id = SelectField(
        "Research topic the project answers (optional)",
        coerce=_optional_id,
        description="Topics that people with MS proposed and the network adopted for research.",
    )
    decision_deadline = DateTimeLocalField(
        "Decision deadline (UTC)",
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        tz=UTC,
        validators=[InputRequired(message="Give the date and time registries must decide by.")],
        invalid_value_message="Give the date and time as on a calendar, e.g. 2026-09-30 12:00.",
        description="Give the time in UTC (Coordinated Universal Time), not your local time. "
        "Registries need at least a day.",
    )
    scope_codes = MultiCheckboxField(
        "Consent the project needs",
        validators=[DataRequired(message="Choose at least one consent scope the project needs.")],
        description="Participants are counted only if they allow every scope you tick.",
    )
    variable_ids = MultiCheckboxField(
        "Variables the project requests",
        coerce=int,
        validators=[DataRequired(message="Choose at least one variable the project requests.")],
    )

    def __init__(
        self,
        *args: Any,
        scopes: list[tuple[str, str]],
        variables: list[tuple[int, str]],
        topics: list[tuple[int, str]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.topic_id.choices = choices([("", "None"), *topics])
        self.scope_codes.choices = choices(scopes)
        self.variable_ids.choices = choices(variables)

    def validate_decision_deadline(self, field: DateTimeLocalField) -> None:
        """Not absurdly far ahead (the service checks it is at least a day away)."""
        if field.data is not None and field.data > utcnow() + MAX_DEADLINE_AHEAD:
            raise ValidationError("Choose a deadline within the next five years.")

    def details(self) -> ProposalDetails:
        """The details as the services take them."""
        return ProposalDetails(
            title=self.title.data,
            lead_researcher=self.lead_researcher.data,
            institution=self.institution.data,
            sponsor=self.sponsor.data,
            plain_summary=self.plain_summary.data,
            scientific_summary=self.scientific_summary.data,
            language=self.language.data,
            analysis_mode=AnalysisMode(self.analysis_mode.data),
            ethics_reference=self.ethics_reference.data,
            topic_id=self.topic_id.data,
            decision_deadline=self.decision_deadline.data,
            scope_codes=list(self.scope_codes.data or []),
            variable_ids=list(self.variable_ids.data or []),
        )


def _reason(label: str, missing: str, limit: int = MAX_TEXT_LENGTH, **kwargs: Any):
    return TextAreaField(
        label,
        filters=[strip],
        validators=[
            DataRequired(message=missing),
            Length(max=limit, message=f"Use at most {limit:,} characters."),
        ],
        **kwargs,
    )


class ConfirmForm(Form):
    """A button that changes something and needs nothing written (only the CSRF token)."""


class QuestionForm(Form):
    """A custodian asks the proposer for information."""

    question = _reason(
        "Your question to the proposer",
        "Write your question to the proposer.",
        description="Your registry's deadline pauses until the proposer answers.",
    )


class ConditionsForm(Form):
    """A custodian approves on conditions."""

    conditions = _reason(
        "Conditions of your approval",
        "Write the conditions of your approval.",
        description="The proposer accepts or refuses them; your registry takes part only if "
        "they accept.",
    )


class DeclineForm(Form):
    """A custodian declines (a reason is required)."""

    decline_reason = _reason(
        "Why your registry declines",
        "Write a reason for declining.",
        description="The proposer and the coordination centre read it.",
    )


class WithdrawApprovalForm(Form):
    """A custodian takes back their registry's approval."""

    withdraw_reason = _reason(
        "Why your registry withdraws its approval",
        "Write a reason for withdrawing the approval.",
    )


class AnswerForm(Form):
    """The proposer answers a registry's question (prefixed by the thread: one per registry)."""

    answer = _reason("Your answer", "Write your answer.")


class WithdrawProposalForm(Form):
    """The proposer withdraws their proposal."""

    reason = _reason(
        "Why you withdraw the proposal",
        "Give a reason for withdrawing.",
        MAX_REASON_LENGTH,
        description="Staff and the registries it was sent to read it.",
    )
