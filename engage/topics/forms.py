"""Topic forms."""

from __future__ import annotations

from urllib.parse import urlsplit

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
    StopValidation,
    ValidationError,
)

from engage.forms import Form, choices, strip
from engage.topics.lifecycle import MAX_REFERENCE_LINKS
from engage.topics.models import PUBLIC_STATUS_ORDER, TopicCategory, TopicStatus
from engage.topics.queries import TopicSort

CATEGORY_CHOICES = [(c.value, c.label) for c in TopicCategory]


def _links(value: object) -> object:
    """Split the reference-links text into non-empty lines."""
    if not isinstance(value, str):
        return value
    return value.replace("\r\n", "\n").strip()


class TopicForm(Form):
    """Propose a topic, or edit a returned one."""

    title = StringField(
        "Title",
        filters=[strip],
        validators=[
            DataRequired(message="Give your topic a short title."),
            Length(min=10, max=150, message="Use between 10 and 150 characters."),
        ],
        description="Short and clear; a question works well, e.g. “Does vitamin D slow MS?”",
    )
    question = TextAreaField(
        "Research question",
        filters=[strip],
        validators=[
            DataRequired(message="Write the question you would like research to answer."),
            Length(max=2000, message="Use at most 2,000 characters."),
        ],
        description="What should researchers find out?",
    )
    rationale = TextAreaField(
        "Why it matters",
        filters=[strip],
        validators=[
            DataRequired(message="Tell us why this matters to people with MS."),
            Length(max=10000, message="Use at most 10,000 characters."),
        ],
        description="You can use *emphasis*, lists and links (Markdown).",
    )
    category = SelectField(
        "Category",
        choices=choices([("", "Choose a category"), *CATEGORY_CHOICES]),
        validators=[InputRequired(message="Choose the category that fits best.")],
    )
    reference_links = TextAreaField(
        "Reference links (optional)",
        filters=[strip, _links],
        validators=[Length(max=2000, message="Use at most 2,000 characters.")],
        description=f"Up to {MAX_REFERENCE_LINKS} web addresses, one per line, starting with https://",
    )
    # Set after the person has seen the possible duplicates and still wants to go on.
    not_duplicate = BooleanField("None of these is my topic: submit it anyway")

    def validate_category(self, field: SelectField) -> None:
        """Only the network's categories."""
        if field.data not in {value for value, _ in CATEGORY_CHOICES}:
            raise ValidationError("Choose the category that fits best.")

    def validate_reference_links(self, field: TextAreaField) -> None:
        """At most five http(s) addresses."""
        links = self.links()
        if len(links) > MAX_REFERENCE_LINKS:
            raise ValidationError(f"Give at most {MAX_REFERENCE_LINKS} links.")
        for link in links:
            try:
                parts = urlsplit(link)
            except ValueError:  # e.g. an unclosed "[" or a host that is not one after NFKC
                parts = None
            if (
                parts is None
                or parts.scheme not in {"http", "https"}
                or not parts.netloc
                or len(link) > 500
            ):
                raise ValidationError(f"“{link[:60]}” is not a web address starting with https://")

    def links(self) -> list[str]:
        """The reference links, one per non-empty line."""
        return [
            line.strip() for line in (self.reference_links.data or "").split("\n") if line.strip()
        ]


class CommentForm(Form):
    """Write or edit a comment."""

    body = TextAreaField(
        "Your comment",
        filters=[strip],
        validators=[
            DataRequired(message="Write your comment."),
            Length(max=5000, message="Use at most 5,000 characters."),
        ],
        description="Be kind. You can use *emphasis*, lists and links.",
    )


class ReportForm(Form):
    """Report a topic or comment to staff."""

    reason = TextAreaField(
        "What is wrong with it?",
        filters=[strip],
        validators=[
            DataRequired(message="Tell staff what is wrong."),
            Length(max=1000, message="Use at most 1,000 characters."),
        ],
    )


# The moderation and merge forms share the staff topic page and both have a "reason": each
# field has an id of its own (the posted names stay the same), so every label names one box.
class ModerateForm(Form):
    """Staff move a topic to its next status."""

    # Starts on an empty choice, so that no status is chosen (and no topic published) by accident.
    status = SelectField(
        "New status",
        id="moderate-status",
        validators=[InputRequired(message="Choose the new status.")],
    )
    reason = TextAreaField(
        "Reason (required when returning or rejecting; the author reads it)",
        id="moderate-reason",
        filters=[strip],
        validators=[Length(max=2000, message="Use at most 2,000 characters.")],
    )
    proposal_reference = StringField(
        "Governance proposal reference (when adopting)",
        id="moderate-proposal-reference",
        filters=[strip],
        validators=[Length(max=80, message="Use at most 80 characters.")],
    )

    def __init__(self, *args: object, allowed: list[TopicStatus], **kwargs: object):
        super().__init__(*args, **kwargs)
        self.status.choices = choices(
            [("", "Choose a new status"), *((s.value, s.label) for s in allowed)]
        )


class MergeForm(Form):
    """Staff merge a topic into another one."""

    target_id = IntegerField(
        "Number of the topic to merge into",
        id="merge-target",
        validators=[
            InputRequired(message="Enter the number of the topic to merge into."),
            NumberRange(min=1, max=2**31 - 1, message="Enter a topic number."),
        ],
    )
    reason = TextAreaField(
        "Reason (the author and supporters read it)",
        id="merge-reason",
        filters=[strip],
        validators=[
            DataRequired(message="Give a reason."),
            Length(max=2000, message="Use at most 2,000 characters."),
        ],
    )


def _sent(form: Form, field: IntegerField) -> None:
    """Refuse a post without the field at all: a browser sends the box even when it is empty,
    and only an empty box means "no limit"."""
    if not field.raw_data:
        raise StopValidation("Enter a number, or leave the box empty for no limit.")


class SupportBudgetForm(Form):
    """Staff cap how many open topics one person may support at once."""

    budget = IntegerField(
        "Most open topics one person may support at once",
        validators=[
            _sent,
            Optional(),
            NumberRange(min=1, max=10_000, message="Enter a number from 1 to 10,000."),
        ],
        description="Leave empty for no limit.",
    )


class ResolveReportsForm(Form):
    """Staff decide on the reports of one item."""

    comment_id = HiddenField()
    decision = RadioField(
        "Decision",
        choices=choices(
            [("uphold", "Keep it hidden (reports upheld)"), ("dismiss", "Show it again")]
        ),
        validators=[InputRequired(message="Choose a decision.")],
    )


class TopicFilterForm(Form):
    """Filters of the public list (GET, no CSRF needed for a read)."""

    class Meta:
        csrf = False

    q = StringField("Search", filters=[strip], validators=[Length(max=100)])
    category = SelectField(
        "Category",
        choices=choices([("", "All categories"), *CATEGORY_CHOICES]),
        validators=[Optional()],
    )
    status = SelectField(
        "Status",
        choices=choices(
            [("", "Any public status")]
            + [(s.value, s.label) for s in PUBLIC_STATUS_ORDER]
        ),
        validators=[Optional()],
    )
    sort = SelectField(
        "Sort by",
        choices=choices(
            [
                (TopicSort.SUPPORTED.value, "Most supported"),
                (TopicSort.NEWEST.value, "Newest"),
                (TopicSort.RANDOM.value, "Random order"),
            ]
        ),
        default=TopicSort.SUPPORTED.value,
        validators=[Optional()],
    )
