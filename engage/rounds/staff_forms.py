"""Forms of the rounds' staff pages: a round's details, its shortlist, the final workshop's
agreed Top 10 and the adoption of its topics.

Limits mirror the services' (``engage.rounds.setup``, ``engage.rounds.workshop``) so an
over-long text is shown next to its field; the services still decide.
"""

from __future__ import annotations

from typing import Any

from wtforms import (
    BooleanField,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    NumberRange,
    Optional,
    ValidationError,
)

from engage.form_fields import Checkboxes, UtcDateTime, max_length
from engage.forms import Form, choices, strip
from engage.rounds import setup, workshop
from engage.rounds.models import DEFAULT_MAX_RANKS, EvidenceStatus
from engage.rounds.rules import DEFAULT_GROUPS

NO_TOPIC = ""
# The largest id an integer column holds (PostgreSQL's integer).
MAX_ID = 2**31 - 1
UTC_HELP = (
    "Date and time in UTC (Coordinated Universal Time: the time in London in winter, one "
    "hour behind it in summer)."
)
EVIDENCE_CHOICES = [
    (EvidenceStatus.UNANSWERED.value, "Unanswered: no good research answers it yet"),
    (
        EvidenceStatus.PARTLY_ANSWERED.value,
        "Partly answered: some research exists (say what, below)",
    ),
    (
        EvidenceStatus.ANSWERED.value,
        "Already answered: existing research answers it (it cannot enter the round)",
    ),
]


class RoundForm(Form):
    """A round's details."""

    title = StringField(
        "Title",
        filters=[strip],
        description="For example: Priorities for MS treatment research 2027.",
        validators=[
            DataRequired(message="Write the round's title."),
            max_length(setup.TITLE_MAX_LENGTH),
        ],
    )
    question = TextAreaField(
        "Question people answer by ranking",
        filters=[strip],
        description="For example: Which unanswered questions about MS treatment matter most "
        "to you?",
        validators=[
            DataRequired(message="Write the question people answer."),
            max_length(setup.QUESTION_MAX_LENGTH),
        ],
    )
    roles = Checkboxes(
        "Who takes part",
        description="Each forms its own group, and every group counts the same in the result, "
        "however many people are in it.",
        choices=choices((group["roles"][0], group["label"]) for group in DEFAULT_GROUPS),
        invalid_choice_message="Choose among the groups listed.",
        validators=[InputRequired(message="Choose at least one group.")],
    )
    max_ranks = IntegerField(
        "How many topics each person ranks at most",
        default=DEFAULT_MAX_RANKS,
        description=f"From 1 to {setup.MAX_RANKS_LIMIT}. Usually {DEFAULT_MAX_RANKS}.",
        validators=[
            InputRequired(message="Give a whole number."),
            NumberRange(
                min=1,
                max=setup.MAX_RANKS_LIMIT,
                message=f"Give a whole number from 1 to {setup.MAX_RANKS_LIMIT}.",
            ),
        ],
    )
    opens_at = UtcDateTime(
        "Opens (UTC)",
        description=UTC_HELP + " Leave time to build the shortlist before then.",
        validators=[InputRequired(message="Give the opening date and time.")],
    )
    closes_at = UtcDateTime(
        "Closes (UTC)",
        description=UTC_HELP + " The result is counted and published at this time.",
        validators=[InputRequired(message="Give the closing date and time.")],
    )

    def validate_closes_at(self, field: UtcDateTime) -> None:
        """The round must close after it opens."""
        if field.data and self.opens_at.data and field.data <= self.opens_at.data:
            raise ValidationError("The closing time must come after the opening time.")

    def details(self) -> setup.RoundDetails:
        """What the form says, for the services."""
        return setup.RoundDetails(
            title=self.title.data,
            question=self.question.data,
            roles=list(self.roles.data),
            opens_at=self.opens_at.data,
            closes_at=self.closes_at.data,
            max_ranks=self.max_ranks.data,
        )


class ShortlistForm(Form):
    """Add a shortlisted topic to a round, with its evidence check."""

    topic_id = SelectField(
        "Topic",
        description="Only topics with the status “shortlisted” can be chosen.",
        coerce=int,
        invalid_choice_message="Choose a topic from the list (reload the page to see the "
        "topics that can be added now).",
        validators=[InputRequired(message="Choose a topic.")],
    )
    evidence_status = RadioField(
        "What does existing research say?",
        choices=choices(EVIDENCE_CHOICES),
        invalid_choice_message="Choose what the evidence check found.",
        validators=[InputRequired(message="Choose what the evidence check found.")],
    )
    evidence_note = TextAreaField(
        "Evidence note",
        filters=[strip],
        description="What is already known, in plain words, e.g. “Partly answered: one small "
        "trial; see the review linked”. Required for a partly answered question unless you "
        "give a link.",
        validators=[Optional(), max_length(setup.EVIDENCE_NOTE_MAX_LENGTH)],
    )
    evidence_url = StringField(
        "Link to the evidence (optional)",
        filters=[strip],
        description="A web address starting https://, e.g. a systematic review.",
        validators=[Optional(), max_length(setup.EVIDENCE_URL_MAX_LENGTH)],
    )

    def __init__(self, *args: Any, topics: list[tuple[int, str]], **kwargs: Any) -> None:
        """:param topics: (id, title) of the topics that can be added."""
        super().__init__(*args, **kwargs)
        self.topic_id.choices = choices(topics)

    def validate_evidence_url(self, field: StringField) -> None:
        """A web address (http or https)."""
        try:
            setup.check_evidence_url(field.data or "")
        except setup.InvalidRound as exc:
            raise ValidationError(str(exc)) from None


class RemoveForm(Form):
    """Take one topic off the shortlist (the button names it in a hidden field)."""

    topic_id = IntegerField(
        "Topic",
        validators=[
            InputRequired(message="Say which topic to remove."),
            NumberRange(min=1, max=MAX_ID, message="Say which topic to remove."),
        ],
    )


class WorkshopForm(Form):
    """The agreed Top N: one topic and one reason per place (fields ``place_N``, ``reason_N``),
    then a note. Build it with :func:`workshop_form`."""

    places: int

    def agreed(self) -> list[tuple[int, str]]:
        """(topic id, reason) of the filled places, in order."""
        agreed = []
        for n in range(1, self.places + 1):
            value = self[f"place_{n}"].data
            if value not in (None, NO_TOPIC):
                agreed.append((int(value), self[f"reason_{n}"].data or ""))
        return agreed

    def validate(self, extra_validators: Any = None) -> bool:
        """Places are filled from the first without gaps, each topic once, and no reason is
        left on an empty place."""
        valid = super().validate(extra_validators)
        seen: dict[str, int] = {}
        gap: int | None = None
        for n in range(1, self.places + 1):
            place, reason = self[f"place_{n}"], self[f"reason_{n}"]
            if place.data in (None, NO_TOPIC):
                if reason.data:
                    reason.errors.append("Choose a topic for this place, or clear its reason.")
                    valid = False
                gap = gap or n
                continue
            if gap is not None:
                self[f"place_{gap}"].errors.append(
                    f"Fill the places in order: place {gap} is empty but place {n} is not."
                )
                valid, gap = False, None
            if place.data in seen:
                place.errors.append(f"This topic already has place {seen[place.data]}.")
                valid = False
            seen.setdefault(place.data, n)
        if valid and not seen:
            self["place_1"].errors.append("Choose at least the topic in place 1.")
            valid = False
        return valid


def workshop_form(places: int, topics: list[tuple[int, str]], **kwargs: Any) -> WorkshopForm:
    """A :class:`WorkshopForm` with ``places`` places choosing among ``topics`` (id, title)."""
    options = choices([(NO_TOPIC, "No topic"), *((str(tid), title) for tid, title in topics)])
    fields: dict[str, Any] = {"places": places}
    for n in range(1, places + 1):
        fields[f"place_{n}"] = SelectField(
            f"Topic in place {n}",
            choices=options,
            invalid_choice_message="Choose a topic of the shortlist, or No topic.",
            validators=[Optional()],
        )
        fields[f"reason_{n}"] = TextAreaField(
            f"Reason for place {n}",
            filters=[strip],
            description="Needed when this place differs from the survey.",
            validators=[Optional(), max_length(workshop.REASON_MAX_LENGTH)],
        )
    fields["note"] = TextAreaField(
        "Note about the workshop (optional)",
        filters=[strip],
        description="Shown with the agreed list, e.g. who took part and how they decided.",
        validators=[Optional(), max_length(workshop.NOTE_MAX_LENGTH)],
    )
    form_class = type("AgreedTopForm", (WorkshopForm,), fields)
    return form_class(**kwargs)


class AdoptForm(Form):
    """Mark topics of the agreed Top 10 adopted for research (a confirmed step)."""

    topic_ids = Checkboxes(
        "Topics to mark adopted",
        coerce=int,
        invalid_choice_message="Choose among the agreed topics not yet adopted (reload the "
        "page to see them).",
        validators=[InputRequired(message="Tick at least one topic.")],
    )
    confirm = BooleanField(
        "Yes, mark the ticked topics adopted for research and send the emails",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )

    def __init__(self, *args: Any, topics: list[tuple[int, str]], **kwargs: Any) -> None:
        """:param topics: (id, title) of the agreed topics not yet adopted."""
        super().__init__(*args, **kwargs)
        self.topic_ids.choices = choices(topics)
