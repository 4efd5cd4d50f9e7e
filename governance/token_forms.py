"""Forms of the custodian's API token page."""

from __future__ import annotations

from wtforms import StringField
from wtforms.validators import DataRequired, Length

from engage.forms import Form, strip
from governance.tokens import MAX_NAME_LENGTH


class CreateTokenForm(Form):
    """Create an API token: only its name is asked."""

    name = StringField(
        "Name",
        filters=[strip],
        validators=[
            DataRequired(message="Give the token a name, e.g. the system that will use it."),
            Length(max=MAX_NAME_LENGTH, message=f"Use at most {MAX_NAME_LENGTH} characters."),
        ],
        description="What the token is for, e.g. “Registry sync server”. Only you see it.",
    )


class RevokeTokenForm(Form):
    """Revoke one API token (the button carries only the CSRF token)."""
