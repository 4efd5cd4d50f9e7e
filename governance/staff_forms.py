"""Forms of governance's staff pages: the proposal editor, the screening and dispatch steps,
deadline extensions and the variable catalogue.

Limits mirror the services' (``governance.proposal_details.TEXT_LIMITS``, the catalogue's
lengths) so an over-long text is shown next to its field; the services still decide.
"""

from __future__ import annotations

from typing import Any

from wtforms import HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Optional, ValidationError

from engage.choices import LANGUAGE_CHOICES
from engage.form_fields import Checkboxes, UtcDateTime, max_length
from engage.forms import Form, choices, strip
from governance import catalogue
from governance.models import AnalysisMode
from governance.proposal_details import TEXT_LIMITS
from governance.proposals import MAX_REASON_LENGTH

NO_TOPIC = ""


def _text(label: str, name: str, *, area: bool = False, description: str = "") -> Any:
    """A required, trimmed text field with the service's length limit."""
    field_class = TextAreaField if area else StringField
    return field_class(
        label,
        filters=[strip],
        description=description,
        validators=[
            DataRequired(message=f"Write the {label.lower()}."),
            max_length(TEXT_LIMITS[name]),
        ],
    )


class ProposalForm(Form):
    """Every detail of a proposal, as staff write it on a proposer's behalf."""

    title = _text("Title", "title")
    lead_researcher = _text("Lead researcher", "lead_researcher")
    institution = _text("Institution", "institution")
    sponsor = _text("Sponsor", "sponsor")
    plain_summary = _text(
        "Plain-language summary",
        "plain_summary",
        area=True,
        description="For people with MS: short sentences and everyday words. Markdown is "
        "allowed. Its reading level is shown after saving.",
    )
    language = SelectField(
        "Language of the plain-language summary",
        choices=choices(LANGUAGE_CHOICES),
        default="en",
        invalid_choice_message="Choose a language from the list.",
        validators=[InputRequired(message="Choose the summary's language.")],
    )
    scientific_summary = _text(
        "Scientific summary",
        "scientific_summary",
        area=True,
        description="For the registries' reviewers. Markdown is allowed.",
    )
    analysis_mode = RadioField(
        "How the data is analysed",
        choices=choices((mode.value, mode.label) for mode in AnalysisMode),
        invalid_choice_message="Choose pooled or federated analysis.",
        validators=[InputRequired(message="Choose pooled or federated analysis.")],
    )
    ethics_reference = _text("Ethics approval reference", "ethics_reference")
    topic_id = SelectField(
        "Research topic the project answers",
        description="Only topics adopted for research can be chosen.",
        invalid_choice_message="Choose a topic from the list, or None.",
        validators=[Optional()],
    )
    decision_deadline = UtcDateTime(
        "Decision deadline (UTC)",
        description="Date and time in UTC (Coordinated Universal Time), at least one day "
        "from now. Registries can be given more time later.",
        validators=[InputRequired(message="Give the decision deadline as a date and time.")],
    )
    scope_codes = Checkboxes(
        "Consent scopes the project needs",
        invalid_choice_message="Choose among the scopes of the published consent form "
        "(reload the page to see them).",
        description="Choose among the scopes of the published consent form.",
        validators=[InputRequired(message="Choose at least one consent scope.")],
    )
    variable_ids = Checkboxes(
        "Variables the project requests",
        invalid_choice_message="Choose among the variables the catalogue offers; one you "
        "chose is no longer offered (it may have been retired): reload the page.",
        coerce=int,
        validators=[InputRequired(message="Choose at least one variable.")],
    )

    def __init__(
        self,
        *args: Any,
        scopes: list[tuple[str, str]],
        variables: list[tuple[int, str]],
        topics: list[tuple[int, str]],
        **kwargs: Any,
    ) -> None:
        """:param scopes: (code, title) of the scopes that may be chosen.
        :param variables: (id, label) of the variables that may be chosen.
        :param topics: (id, title) of the adopted topics."""
        super().__init__(*args, **kwargs)
        self.scope_codes.choices = choices(scopes)
        self.variable_ids.choices = choices(variables)
        self.topic_id.choices = choices(
            [(NO_TOPIC, "None"), *((str(topic_id), title) for topic_id, title in topics)]
        )

    def chosen_topic_id(self) -> int | None:
        """The chosen topic's id, or None for "None" (the choice list has only ids)."""
        value = (self.topic_id.data or NO_TOPIC).strip()  # Optional() lets spaces through
        return int(value) if value != NO_TOPIC else None


class ConfirmForm(Form):
    """A button that changes a proposal's status (the CSRF token is all it carries)."""


class ReasonForm(Form):
    """A step that needs a reason the proposer can read."""

    reason = TextAreaField(
        "Reason",
        filters=[strip],
        validators=[DataRequired(message="Give a reason."), max_length(MAX_REASON_LENGTH)],
    )


class OptionalReasonForm(Form):
    """A step that may carry a note."""

    reason = TextAreaField(
        "Note (optional)", filters=[strip], validators=[Optional(), max_length(MAX_REASON_LENGTH)]
    )


class DispatchForm(Form):
    """The registries a screened proposal is sent to."""

    registry_ids = Checkboxes(
        "Registries to send the proposal to",
        invalid_choice_message="Choose among the registries listed (reload the page to see "
        "the registries taking part now).",
        coerce=int,
        validators=[InputRequired(message="Choose at least one registry.")],
    )

    def __init__(self, *args: Any, registries: list[tuple[int, str]], **kwargs: Any) -> None:
        """:param registries: (id, label) of the active registries."""
        super().__init__(*args, **kwargs)
        self.registry_ids.choices = choices(registries)


class ExtendDeadlineForm(Form):
    """Give one registry more time."""

    deadline = UtcDateTime(
        "New deadline (UTC)",
        validators=[InputRequired(message="Give the new deadline as a date and time.")],
    )
    reason = TextAreaField(
        "Reason for the extension",
        filters=[strip],
        validators=[
            DataRequired(message="Give a reason for the extension."),
            max_length(MAX_REASON_LENGTH),
        ],
    )


class VariableForm(Form):
    """A catalogue variable's details."""

    code = StringField(
        "Code",
        filters=[strip],
        description="2 to 40 capital letters, digits or underscores, starting with a letter, "
        "e.g. DMT_EXPOSURE. It cannot change once a proposal requests the variable.",
        validators=[DataRequired(message="Write the variable's code."), max_length(40)],
    )
    name = StringField(
        "Name",
        filters=[strip],
        validators=[
            DataRequired(message="Write the variable's name."),
            max_length(catalogue.MAX_NAME_LENGTH),
        ],
    )
    domain = StringField(
        "Domain",
        filters=[strip],
        description="The group it is listed under, e.g. Disease course.",
        validators=[
            DataRequired(message="Write the variable's domain."),
            max_length(catalogue.MAX_DOMAIN_LENGTH),
        ],
    )
    description = TextAreaField(
        "Description",
        filters=[strip],
        validators=[
            DataRequired(message="Write the variable's description."),
            max_length(catalogue.MAX_DESCRIPTION_LENGTH),
        ],
    )


class VariableStateForm(Form):
    """Retire or reinstate a variable (the code confirms which one the page showed)."""

    code = HiddenField("Variable code", validators=[DataRequired(message="Say which variable.")])

    def __init__(self, *args: Any, expected_code: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._expected_code = expected_code

    def validate_code(self, field: HiddenField) -> None:
        """The page must name the variable it shows."""
        if field.data != self._expected_code:
            raise ValidationError("This page is out of date: reload it and try again.")
