"""Forms of the mailing-list pages: preferences, public sign-up, staff's list editor, and the
one-button forms (confirm, unsubscribe, archive) that carry only their CSRF token.

Limits mirror the services' (:mod:`newsletters.lists`) so an over-long text is shown next to
its field; the services still decide.
"""

from __future__ import annotations

from typing import Any

from wtforms import (
    EmailField,
    HiddenField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, InputRequired, Length, ValidationError

from engage.choices import LANGUAGE_CHOICES
from engage.forms import Form, choices, strip
from engage.names import PersonName, tidy_name_filter
from newsletters.lists import (
    MAX_EMAIL_LENGTH,
    MAX_LIST_DESCRIPTION_LENGTH,
    MAX_LIST_ID,
    MAX_LIST_NAME_LENGTH,
    MAX_SUBSCRIBER_NAME_LENGTH,
)
from newsletters.models import ListVisibility

# No page offers this many lists; more ids in one post are not a person choosing.
MAX_CHOSEN_LISTS = 200
NO_SCOPE = ""


class ListIdsField(SelectMultipleField):
    """The ids of the lists a person ticked (the page draws the checkboxes itself, each with
    its description). Ids that are not whole numbers are an error next to the field, not a
    500; whether each id is a list they may choose is the service's question."""

    def __init__(self, label: str, **kwargs: Any) -> None:
        kwargs.setdefault("coerce", int)
        kwargs.setdefault("validate_choice", False)
        super().__init__(label, **kwargs)

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Read the ticked ids; refuse anything that is not a list id."""
        self.data = []
        if len(valuelist) > MAX_CHOSEN_LISTS:
            raise ValueError("Too many lists were sent. Reload the page and choose again.")
        for value in valuelist:
            text = str(value).strip()
            if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_LIST_ID:
                raise ValueError(
                    "A list you chose is not available. Reload the page and choose again."
                )
            if int(text) not in self.data:
                self.data.append(int(text))


class ButtonForm(Form):
    """A button that changes something: only the CSRF token."""


class ListStateForm(Form):
    """Archive or restore a list (the name confirms which one the page showed)."""

    name = HiddenField("List name", validators=[DataRequired(message="Say which list.")])

    def __init__(self, *args: Any, expected_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._expected_name = expected_name

    def validate_name(self, field: HiddenField) -> None:
        """The page must name the list it shows."""
        if field.data != self._expected_name:
            raise ValidationError("This page is out of date: reload it and try again.")


class PreferencesForm(Form):
    """The lists a signed-in person wants."""

    lists = ListIdsField("Your newsletters")


class SubscribeForm(Form):
    """Sign up to public lists without an account."""

    name = StringField(
        "Your name",
        filters=[strip, tidy_name_filter],
        validators=[
            DataRequired(message="Enter your name."),
            Length(
                max=MAX_SUBSCRIBER_NAME_LENGTH,
                message=f"Use at most {MAX_SUBSCRIBER_NAME_LENGTH} characters.",
            ),
            PersonName(),
        ],
        description="Used to greet you in our newsletters.",
    )
    email = EmailField(
        "Email address",
        filters=[strip],
        validators=[
            DataRequired(message="Enter your email address."),
            Length(max=MAX_EMAIL_LENGTH, message=f"Use at most {MAX_EMAIL_LENGTH} characters."),
            Email(message="Enter an email address like name@example.org."),
        ],
        description="We send a link to this address: nothing arrives until you follow it.",
    )
    language = SelectField(
        "Preferred language",
        choices=choices(LANGUAGE_CHOICES),
        default="en",
        validators=[InputRequired(message="Choose a language.")],
    )
    lists = ListIdsField("Newsletters you want")

    def validate_lists(self, field: ListIdsField) -> None:
        """At least one list."""
        if not field.data:
            raise ValidationError("Choose at least one newsletter.")


class ListForm(Form):
    """Staff's list editor."""

    name = StringField(
        "Name",
        filters=[strip],
        validators=[
            DataRequired(message="Give the list a name."),
            Length(
                max=MAX_LIST_NAME_LENGTH, message=f"Use at most {MAX_LIST_NAME_LENGTH} characters."
            ),
        ],
    )
    description = TextAreaField(
        "Description",
        filters=[strip],
        validators=[
            Length(
                max=MAX_LIST_DESCRIPTION_LENGTH,
                message=f"Use at most {MAX_LIST_DESCRIPTION_LENGTH:,} characters.",
            )
        ],
        description="Shown next to the list where people choose their newsletters.",
    )
    visibility = SelectField(
        "Who may subscribe",
        choices=choices(ListVisibility.choices()),
        default=ListVisibility.PUBLIC.value,
        validators=[InputRequired(message="Choose who may subscribe.")],
    )
    required_scope = SelectField(
        "Consent it needs",
        description=(
            "Subscribers receive the list only while their consent allows this. A list that "
            "needs consent is for account holders only."
        ),
    )

    def __init__(self, *args: Any, scope_choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.required_scope.choices = choices([(NO_SCOPE, "None"), *scope_choices])
