"""Consent forms (the HTML kind): participants' decisions and staff's form versions.

Every participant form carries the form version the page showed (``version_id``) and the
page's state token (``state``): the service refuses a version that is no longer current and a
page made before the person's newest change (a replay or a stale tab).
"""

from __future__ import annotations

from typing import Any

from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)
from wtforms.widgets import HiddenInput

from engage.choices import LANGUAGE_CHOICES
from engage.consent.decisions import LeaveOption
from engage.consent.duo import duo_choices
from engage.consent.models import ConsentScope, ErasureStatus, ScopeKind
from engage.consent.queries import PublishedScope
from engage.consent.versions import SCOPE_CODE_PATTERN
from engage.forms import Form, choices, strip

ALLOW, DENY = "permit", "deny"
DECISION_CHOICES = [(ALLOW, "Yes, I allow this"), (DENY, "No, I do not allow this")]
MAX_ID = 2**31 - 1


class _PageState(Form):
    """The version and state token every participant form carries."""

    version_id = IntegerField(
        "Form version",
        widget=HiddenInput(),
        validators=[
            InputRequired(message="The form version is missing: reload the page."),
            NumberRange(min=1, max=MAX_ID, message="The form version is not valid."),
        ],
    )
    state = HiddenField(
        "Page state",
        filters=[strip],
        validators=[
            DataRequired(message="The page state is missing: reload the page."),
            Length(max=64, message="The page state is not valid: reload the page."),
        ],
    )


class ChoiceForm(_PageState):
    """Change one scope's decision (one button on the dashboard)."""

    scope = SelectField(
        "Scope", validators=[InputRequired(message="Choose a scope of the consent form.")]
    )
    decision = SelectField(
        "Decision",
        choices=choices(DECISION_CHOICES),
        validators=[InputRequired(message="Choose whether you allow it.")],
    )

    def __init__(self, *args: Any, scopes: list[PublishedScope], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scope.choices = choices((scope.code, scope.title) for scope in scopes)


class WithdrawOptionalForm(_PageState):
    """Withdraw every optional scope at once."""


class LeaveForm(_PageState):
    """Withdraw a required scope: what the participant wants to happen."""

    option = RadioField(
        "What would you like us to do?",
        choices=choices((option.value, option.label) for option in LeaveOption),
        validators=[InputRequired(message="Choose what you would like us to do.")],
    )


def decisions_form(scopes: list[ConsentScope], base: type[Form] = _PageState) -> type[Form]:
    """A form class with one allow / do-not-allow question per scope (``scope_<CODE>``)."""

    class DecisionsForm(base):  # type: ignore[misc, valid-type]
        """Decide on every scope of the form."""

        def scope_fields(self) -> list[Any]:
            """The per-scope questions, in form order."""
            return [self[f"scope_{scope.code}"] for scope in scopes]

        def allow_by_code(self) -> dict[str, bool]:
            """The answers as scope code → allowed."""
            return {scope.code: self[f"scope_{scope.code}"].data == ALLOW for scope in scopes}

    for scope in scopes:
        setattr(
            DecisionsForm,
            f"scope_{scope.code}",
            RadioField(
                scope.title + (" (required to take part)" if scope.is_required else ""),
                choices=choices(DECISION_CHOICES),
                validators=[InputRequired(message="Choose yes or no.")],
                description=scope.explanation,
            ),
        )
    return DecisionsForm


class PaperConsentBase(_PageState):
    """Staff record a signed paper form: its reference, then every scope's answer."""

    reference = StringField(
        "Reference of the signed paper form",
        filters=[strip],
        validators=[
            DataRequired(message="Enter the reference of the scanned, signed form."),
            Length(max=80, message="Use at most 80 characters."),
        ],
        description="For example the number of the scanned document in the records system.",
    )


# Staff: form versions and scopes --------------------------------------------------------------
class VersionForm(Form):
    """The texts of a form version."""

    title = StringField(
        "Title",
        filters=[strip],
        validators=[
            DataRequired(message="Give the form a title."),
            Length(max=200, message="Use at most 200 characters."),
        ],
    )
    summary = TextAreaField(
        "Plain-language summary",
        filters=[strip],
        validators=[
            DataRequired(message="Write the plain-language summary."),
            Length(max=5000, message="Use at most 5,000 characters."),
        ],
        description="Short sentences and everyday words: its reading level is checked before "
        "publishing. You can use *emphasis*, lists and links (Markdown).",
    )
    body = TextAreaField(
        "Full text",
        filters=[strip],
        validators=[
            DataRequired(message="Write the full text of the consent form."),
            Length(max=100_000, message="Use at most 100,000 characters."),
        ],
        description="The text approved by the ethics committee (Markdown).",
    )
    ethics_reference = StringField(
        "Ethics approval reference",
        filters=[strip],
        validators=[
            DataRequired(message="Enter the ethics committee's approval reference."),
            Length(max=120, message="Use at most 120 characters."),
        ],
    )
    language = SelectField(
        "Language of the text",
        choices=choices(LANGUAGE_CHOICES),
        default="en",
        validators=[InputRequired(message="Choose the language.")],
    )


class ScopeForm(Form):
    """One scope of a draft."""

    code = StringField(
        "Scope code",
        filters=[strip, lambda v: v.upper() if isinstance(v, str) else v],
        validators=[
            DataRequired(message="Enter a code, e.g. GENOMIC_DATA."),
            Length(max=40, message="Use at most 40 characters."),
            Regexp(
                SCOPE_CODE_PATTERN.pattern,
                message="Use 2 to 40 capital letters, digits or underscores, starting with a "
                "letter.",
            ),
        ],
        description="Stable across versions: keep the code when rewording the same scope.",
    )
    title = StringField(
        "Title",
        filters=[strip],
        validators=[
            DataRequired(message="Give the scope a short title."),
            Length(max=200, message="Use at most 200 characters."),
        ],
        description="What the person allows, e.g. “Include my genomic data”.",
    )
    explanation = TextAreaField(
        "Plain-language explanation",
        filters=[strip],
        validators=[
            DataRequired(message="Explain in plain language what this means."),
            Length(max=2000, message="Use at most 2,000 characters."),
        ],
    )
    kind = SelectField(
        "Kind",
        choices=choices((kind.value, kind.label) for kind in ScopeKind),
        validators=[InputRequired(message="Choose the kind of scope.")],
    )
    duo_code = SelectField(
        "Data Use Ontology (GA4GH DUO) code",
        choices=choices(duo_choices()),
        validators=[Optional()],
    )
    is_required = BooleanField("Required to take part in the programme")


class RemoveScopeForm(Form):
    """Remove a scope from a draft (the code confirms which one)."""

    code = HiddenField(
        "Scope code", validators=[DataRequired(message="Say which scope to remove.")]
    )

    def __init__(self, *args: Any, expected_code: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._expected_code = expected_code

    def validate_code(self, field: HiddenField) -> None:
        """The page must name the scope it shows."""
        if field.data != self._expected_code:
            raise ValidationError("This page is out of date: reload it and try again.")


class PublishForm(Form):
    """Publish a draft: immutable from then on."""

    justification = TextAreaField(
        "Why the summary cannot be simpler (needed when its reading level is above the limit)",
        filters=[strip],
        validators=[Length(max=5000, message="Use at most 5,000 characters.")],
    )
    confirm = BooleanField(
        "I have checked the text and the scopes: publishing makes this version final",
        validators=[DataRequired(message="Confirm that the version is ready.")],
    )


class ErasureStatusForm(Form):
    """Staff move an erasure request on."""

    status = SelectField(
        "New status",
        choices=choices(
            (status.value, status.label.split(":")[0])
            for status in (
                ErasureStatus.IN_PROGRESS,
                ErasureStatus.COMPLETED,
                ErasureStatus.DECLINED,
            )
        ),
        validators=[InputRequired(message="Choose a status.")],
    )
    note = TextAreaField(
        "Note to the participant (required when declining)",
        filters=[strip],
        validators=[Length(max=2000, message="Use at most 2,000 characters.")],
    )
