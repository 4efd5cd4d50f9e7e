"""Account forms. Every field is length-limited; errors are shown next to the field."""

from __future__ import annotations

from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    Email,
    EqualTo,
    InputRequired,
    Length,
    Optional,
    ValidationError,
)

from engage.accounts.models import SIGN_UP_ROLE_CHOICES, Role
from engage.choices import LANGUAGE_CHOICES, country_choices
from engage.form_fields import MultiCheckboxField
from engage.forms import Form, choices, strip
from engage.names import PersonName, tidy_name_filter
from engage.security import MAX_PASSWORD_LENGTH, password_problem


def _country_field() -> SelectField:
    """The country a person lives in (choices are filled in at construction)."""
    return SelectField(
        "Country where you live",
        validators=[InputRequired(message="Choose your country.")],
        validate_choice=True,
    )


def _language_field() -> SelectField:
    """The language a person prefers for research materials."""
    return SelectField(
        "Preferred language",
        choices=choices(LANGUAGE_CHOICES),
        default="en",
        validators=[InputRequired(message="Choose a language.")],
    )


class CountryLanguageMixin:
    """Shared country and language fields (choices are filled in at construction)."""

    country = _country_field()
    language = _language_field()


class SignUpForm(Form):
    """Sign up in one of the four self-service roles.

    The fields are defined in the order the page shows them (the role, the questions for some
    roles, then everyone's details): the error summary lists problems in this order.
    """

    role = RadioField(
        "Which describes you best?",
        choices=choices(SIGN_UP_ROLE_CHOICES),
        validators=[InputRequired(message="Choose the description that fits you.")],
        description=(
            "A data custodian is the person who looks after a registry and decides who may use "
            "its data. A registry is a collection of health data about people with MS, kept by "
            "a hospital network or a country."
        ),
    )
    # For healthcare professionals.
    profession = StringField(
        "Profession",
        filters=[strip],
        validators=[Length(max=120, message="Use at most 120 characters.")],
        description="For example neurologist, MS nurse or physiotherapist.",
    )
    institution = StringField(
        "Institution",
        filters=[strip],
        validators=[Length(max=200, message="Use at most 200 characters.")],
        description="The hospital or practice where you work.",
    )
    # For people at an MS organisation.
    organisation_name = StringField(
        "Name of your MS organisation",
        filters=[strip],
        validators=[Length(max=200, message="Use at most 200 characters.")],
        description="The MS organisation where you work or volunteer.",
    )
    # For data custodians.
    registry = SelectField(
        "Registry you look after",
        coerce=int,
        validate_choice=False,
        description=(
            "The coordination centre (the team that runs Engage) first checks that you look "
            "after this registry. Until they have, you cannot decide on research projects "
            "proposed to it. We email you when they have decided."
        ),
    )
    display_name = StringField(
        "Display name",
        filters=[strip, tidy_name_filter],
        validators=[
            DataRequired(message="Enter the name others will see."),
            Length(max=80, message="Use at most 80 characters."),
            PersonName(),
        ],
        description="Shown next to topics and comments you post. It need not be your real name.",
    )
    email = EmailField(
        "Email address",
        filters=[strip],
        validators=[
            DataRequired(message="Enter your email address."),
            Length(max=254, message="Use at most 254 characters."),
            Email(message="Enter an email address like name@example.org."),
        ],
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(message="Choose a password.")],
        description="At least 10 characters. A few unrelated words make a good password.",
    )
    password_confirm = PasswordField(
        "Repeat the password",
        validators=[
            DataRequired(message="Repeat your password."),
            EqualTo("password", message="The two passwords are not the same."),
        ],
    )
    country = _country_field()
    language = _language_field()

    def __init__(self, *args: object, registry_choices: list[tuple[int, str]], **kwargs: object):
        super().__init__(*args, **kwargs)
        self.country.choices = choices([("", "Choose a country"), *country_choices()])
        self.registry.choices = choices([(0, "Choose a registry"), *registry_choices])

    def validate_password(self, field: PasswordField) -> None:
        """Reject weak passwords with the reason."""
        if len(field.data or "") > MAX_PASSWORD_LENGTH:
            raise ValidationError(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
        problem = password_problem(field.data or "", self.email.data, self.display_name.data)
        if problem:
            raise ValidationError(problem)

    def validate_profession(self, field: StringField) -> None:
        """Healthcare professionals say what they do."""
        if self.role.data == Role.CLINICIAN.value and not field.data:
            raise ValidationError("Enter your profession.")

    def validate_institution(self, field: StringField) -> None:
        """Healthcare professionals say where they work."""
        if self.role.data == Role.CLINICIAN.value and not field.data:
            raise ValidationError("Enter the hospital or practice where you work.")

    def validate_organisation_name(self, field: StringField) -> None:
        """Organisation members name their organisation."""
        if self.role.data == Role.ORGANISATION.value and not field.data:
            raise ValidationError("Enter the name of your MS organisation.")

    def validate_registry(self, field: SelectField) -> None:
        """Custodians choose a registry of the network."""
        if self.role.data != Role.CUSTODIAN.value:
            return
        valid = {choice.value for choice in self.registry.choices if choice.value}
        if field.data not in valid:
            raise ValidationError("Choose the registry you look after.")


class SignInForm(Form):
    """Sign in with email and password."""

    email = EmailField(
        "Email address",
        filters=[strip],
        validators=[
            DataRequired(message="Enter your email address."),
            Length(max=254, message="Use at most 254 characters."),
        ],
    )
    password = PasswordField(
        "Password",
        validators=[
            DataRequired(message="Enter your password."),
            Length(max=MAX_PASSWORD_LENGTH, message="The email address or password is wrong."),
        ],
    )
    remember = BooleanField("Keep me signed in on this device")


class RequestResetForm(Form):
    """Ask for a password-reset link."""

    email = EmailField(
        "Email address",
        filters=[strip],
        validators=[
            DataRequired(message="Enter your email address."),
            Length(max=254, message="Use at most 254 characters."),
            Email(message="Enter an email address like name@example.org."),
        ],
    )


class NewPasswordForm(Form):
    """Choose a new password (from a reset link)."""

    password = PasswordField(
        "New password",
        validators=[DataRequired(message="Choose a new password.")],
        description="At least 10 characters. A few unrelated words make a good password.",
    )
    password_confirm = PasswordField(
        "Repeat the new password",
        validators=[
            DataRequired(message="Repeat your new password."),
            EqualTo("password", message="The two passwords are not the same."),
        ],
    )

    def __init__(self, *args: object, email: str | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)
        self._email = email

    def validate_password(self, field: PasswordField) -> None:
        """Reject weak passwords with the reason."""
        problem = password_problem(field.data or "", self._email)
        if problem:
            raise ValidationError(problem)


class ChangePasswordForm(NewPasswordForm):
    """Change the password while signed in."""

    current_password = PasswordField(
        "Current password",
        validators=[
            DataRequired(message="Enter your current password."),
            Length(max=MAX_PASSWORD_LENGTH, message="Your current password is not right."),
        ],
    )


class ConfirmAddressForm(Form):
    """Confirm an address from an emailed link with the account's password (a new account's
    address, or a new address for an account)."""

    password = PasswordField(
        "Password",
        validators=[
            DataRequired(message="Enter the password of the account."),
            Length(max=MAX_PASSWORD_LENGTH, message="That is not this account's password."),
        ],
    )


class EmailChangeForm(Form):
    """Ask to change one's email address."""

    email = EmailField(
        "New email address",
        filters=[strip],
        validators=[
            DataRequired(message="Enter your new email address."),
            Length(max=254, message="Use at most 254 characters."),
            Email(message="Enter an email address like name@example.org."),
        ],
        description="We send a link to this address. Your address changes once you open it.",
    )


class ProfileForm(CountryLanguageMixin, Form):
    """Edit one's own profile."""

    display_name = StringField(
        "Display name",
        filters=[strip, tidy_name_filter],
        validators=[
            DataRequired(message="Enter the name others will see."),
            Length(max=80, message="Use at most 80 characters."),
            PersonName(),
        ],
    )
    profession = StringField(
        "Profession",
        filters=[strip],
        validators=[Length(max=120, message="Use at most 120 characters.")],
    )
    institution = StringField(
        "Institution",
        filters=[strip],
        validators=[Length(max=200, message="Use at most 200 characters.")],
    )
    organisation_name = StringField(
        "Name of your MS organisation",
        filters=[strip],
        validators=[Length(max=200, message="Use at most 200 characters.")],
    )

    def __init__(self, *args: object, role: Role, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.country.choices = choices([("", "Choose a country"), *country_choices()])
        self._role = role

    def validate_profession(self, field: StringField) -> None:
        """Healthcare professionals keep a profession."""
        if self._role == Role.CLINICIAN and not field.data:
            raise ValidationError("Enter your profession.")

    def validate_institution(self, field: StringField) -> None:
        """Healthcare professionals keep an institution."""
        if self._role == Role.CLINICIAN and not field.data:
            raise ValidationError("Enter your institution.")

    def validate_organisation_name(self, field: StringField) -> None:
        """Organisation members keep their organisation's name."""
        if self._role == Role.ORGANISATION and not field.data:
            raise ValidationError("Enter the name of your MS organisation.")


class EnrolmentForm(Form):
    """Which registries a participant is enrolled in."""

    registries = MultiCheckboxField("Registries you are enrolled in", coerce=int)


# Staff forms ---------------------------------------------------------------------------
class UserSearchForm(Form):
    """Search accounts (GET; no CSRF needed for a read)."""

    class Meta:
        csrf = False

    q = StringField("Name or email contains", filters=[strip], validators=[Length(max=100)])
    role = SelectField(
        "Role",
        choices=choices([("", "Any role"), *((r.value, r.label) for r in Role)]),
        validators=[Optional()],
    )
    pending = BooleanField("Only accounts waiting for a staff decision")


class ClinicianVerificationForm(Form):
    """Confirm or withdraw a clinician's professional claim."""

    verified = SelectField(
        "Professional claim",
        choices=choices([("yes", "Verified"), ("no", "Not verified")]),
        validators=[InputRequired()],
    )


class CustodianDecisionForm(Form):
    """Approve a custodian request for a registry, or decline it with a reason."""

    decision = RadioField(
        "Decision",
        choices=choices([("approve", "Approve"), ("decline", "Decline")]),
        validators=[InputRequired(message="Choose approve or decline.")],
    )
    registry = SelectField("Registry", coerce=int, validators=[Optional()])
    reason = TextAreaField(
        "Reason (required when declining; shown to the person)",
        filters=[strip],
        validators=[Length(max=500, message="Use at most 500 characters.")],
    )

    def validate_reason(self, field: TextAreaField) -> None:
        """Declining needs a reason."""
        if self.decision.data == "decline" and not field.data:
            raise ValidationError("Give a reason when declining a request.")


class RoleForm(Form):
    """Change an account's role."""

    role = SelectField(
        "Role",
        choices=choices((r.value, r.label) for r in Role if r != Role.CUSTODIAN),
        validators=[InputRequired()],
    )


class ActiveForm(Form):
    """Activate or deactivate an account."""

    active = SelectField(
        "Account status",
        choices=choices([("yes", "Active"), ("no", "Deactivated")]),
        validators=[InputRequired()],
    )
