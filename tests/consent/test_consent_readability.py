"""The Flesch-Kincaid grade used to gate consent summaries (no database)."""

from __future__ import annotations

import pytest

from engage.consent.readability import count_syllables, flesch_kincaid_grade, reading_level

LEGAL = (
    "Notwithstanding any provision hereinbefore contained, the data controller shall, subject "
    "to applicable statutory requirements, irrevocably anonymise personal information "
    "pertaining to the participant."
)


@pytest.mark.parametrize(
    ("word", "syllables"),
    [
        ("cat", 1),
        ("the", 1),
        ("share", 1),
        ("used", 1),
        ("makes", 1),
        ("research", 2),
        ("people", 2),
        ("table", 2),
        ("wanted", 2),
        ("changes", 2),
        ("every", 3),
        ("media", 3),
        ("genomic", 3),
        ("imaging", 3),
        ("information", 4),
        ("participant", 4),
        ("participation", 5),
        ("de-identified", 5),
        ("2026", 2),
    ],
)
def test_syllables_of_common_words(word, syllables):
    assert count_syllables(word) == syllables


def test_a_very_simple_sentence_is_the_lowest_grade():
    level = reading_level("The cat sat on the mat.")
    assert (level.sentences, level.words, level.syllables) == (1, 6, 6)
    assert level.grade == 0.0  # 0.39 × 6 + 11.8 × 1 − 15.59 is below zero


def test_a_dense_legal_sentence_reads_at_university_level():
    level = reading_level(LEGAL)
    assert (level.sentences, level.words) == (1, 22)
    # 0.39 × 22 + 11.8 × syllables / 22 − 15.59
    assert level.grade == pytest.approx(0.39 * 22 + 11.8 * level.syllables / 22 - 15.59, abs=0.05)
    assert level.grade > 16


def test_plain_language_stays_below_grade_eight():
    text = (
        "We ask you to share your records with the network. Your name stays with your "
        "registry. You can change your mind at any time."
    )
    assert 0 < flesch_kincaid_grade(text) < 8
    assert flesch_kincaid_grade(text) < flesch_kincaid_grade(LEGAL)


def test_markdown_is_read_as_sentences_of_words():
    markdown = (
        "## What we ask\n\n"
        "- Share your **records**\n"
        "- Use them in [approved](https://example.org) research\n\n"
        "You can stop at any time, e.g. by email."
    )
    level = reading_level(markdown)
    # The heading and each list item end a sentence; "e.g." is one word and ends nothing; the
    # link's target is not read.
    assert level.sentences == 4
    assert level.words == 20


def test_empty_text_has_no_grade():
    assert reading_level("").grade == 0.0 and reading_level("  \n ").words == 0


def test_german_is_graded_with_the_wiener_sachtextformel():
    plain = reading_level("Sie können ja oder nein sagen. Sie können Ihre Meinung ändern.", "de")
    dense = reading_level(
        "Die Verarbeitung personenbezogener Gesundheitsdaten erfolgt ausschließlich auf "
        "Grundlage Ihrer ausdrücklichen, jederzeit widerrufbaren Einwilligungserklärung.",
        "de",
    )
    assert plain.method == dense.method == "Wiener Sachtextformel (4th) grade"
    # 2 sentences, 11 words, none of three syllables ("Meinung" has two: "ei" is one group).
    assert (plain.sentences, plain.words) == (2, 11)
    assert plain.grade < 4 < 12 < dense.grade


def test_spanish_is_graded_with_crawfords_formula():
    level = reading_level(
        "Puede decir sí o no. Puede cambiar de opinión en cualquier momento.", "es"
    )
    assert level.method == "Crawford grade"
    assert (level.sentences, level.words) == (2, 12)
    assert level.grade is not None and 0 <= level.grade < 4


@pytest.mark.parametrize("language", ["sv", "fr", "nl", "ar", "cs"])
def test_languages_without_a_grade_formula_are_not_measured(language):
    level = reading_level("Ett kort och enkelt stycke text. Det har två meningar.", language)
    assert level.grade is None and not level.is_measured
    assert level.method == "not measured for this language"
    assert (level.sentences, level.words) == (2, 10)


def test_english_is_the_default_and_keeps_flesch_kincaid():
    text = "You can say yes or no. You can change your mind at any time."
    assert reading_level(text) == reading_level(text, "en")
    assert reading_level(text).method == "Flesch-Kincaid grade"
