"""Registry forms (staff)."""

from __future__ import annotations

from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, Regexp

from engage.choices import country_choices
from engage.forms import Form, choices, strip


class RegistryForm(Form):
    """Add or edit a registry."""

    name = StringField(
        "Name",
        filters=[strip],
        validators=[
            DataRequired(message="Enter the registry's name."),
            Length(max=200, message="Use at most 200 characters."),
        ],
    )
    code = StringField(
        "Code",
        filters=[lambda v: v.strip().upper() if isinstance(v, str) else v],
        validators=[
            DataRequired(message="Enter a short code."),
            Length(max=20, message="Use at most 20 characters."),
            Regexp(r"^[A-Z0-9-]+$", message="Use only letters, digits and hyphens."),
        ],
        description="A short stable code such as SMSREG; letters, digits and hyphens.",
    )
    country = SelectField("Country", validators=[InputRequired(message="Choose a country.")])
    is_active = BooleanField("Active (people can choose this registry)", default=True)

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.country.choices = choices(
            [("", "Choose a country"), ("INT", "International"), *country_choices()]
        )
