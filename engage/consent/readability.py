"""Reading level of a plain-language summary: a grade level, computed here.

Method (Kincaid, Fishburne, Rogers and Chissom, 1975)::

    grade = 0.39 × (words ÷ sentences) + 11.8 × (syllables ÷ words) − 15.59

The grade is roughly the number of years of schooling a reader needs; public-health guidance
asks for grade 8 or lower. It is computed in three steps:

1. **Plain text.** Markdown is reduced to its words: link targets, emphasis and code marks,
   heading hashes and list bullets are removed. A line that ends a heading, a list item or a
   paragraph ends a sentence even without a full stop.
2. **Sentences and words.** A sentence ends at a run of ``.``, ``!`` or ``?`` followed by
   white space or the end of the text, and at such line ends (a text without any still counts
   as one sentence). Common abbreviations ("e.g.", "i.e.", "Dr.", "etc.") do not end a
   sentence. A word is a run of letters, with inner apostrophes or hyphens ("don't",
   "de-identified"); a number counts as a word of two syllables (most spoken numbers have two
   or more).
3. **Syllables** (a heuristic for English, right for most everyday words and off by one for
   some): count the groups of consecutive vowels (a, e, i, o, u and y); a final silent "e" does
   not count ("share") unless the word ends in consonant + "le" ("table"); "-es" and "-ed"
   endings are silent except after the sounds that need a vowel ("changes", "wanted"); "ia"
   and "io" count as two syllables except in endings such as "-tion", "-sion" and "-cial";
   a hyphenated word is the sum of its parts; every word has at least one syllable.

Grades below zero (very short, simple sentences) are reported as 0.

The Flesch-Kincaid formula and its syllable rules are English. Other languages are graded only
where a grade formula made for the language exists, with syllables counted as groups of the
language's vowels (diphthongs count once):

- German: the fourth Wiener Sachtextformel (Bamberger and Vanecek, 1984), a school grade:
  ``0.2656 × words per sentence + 0.2744 × % of words with three or more syllables − 1.693``;
- Spanish: Crawford's formula (1984), a school grade:
  ``−0.205 × sentences per 100 words + 0.049 × syllables per 100 words − 3.407``.

Every other language is reported as not measured (``grade`` None): its summary needs a native
speaker's review instead of a number from an English formula.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "dr.", "mr.", "mrs.", "ms.", "prof.", "vs.", "no.")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(r"[*_`>#~|]+")
_BULLET = re.compile(r"^\s*(?:[-+*]|\d+[.)])\s+", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|\d+(?:[.,]\d+)*", re.UNICODE)
_VOWEL_GROUP = re.compile(r"[aeiouy]+")
# "io"/"ia" said as two syllables ("radio", "media"), but not in these endings ("nation").
_TWO_VOWEL_SOUNDS = re.compile(r"(?<![cgstx])i[ao]")


@dataclass(frozen=True)
class ReadingLevel:
    """The counts behind a reading grade, the grade itself (None when the language is not
    measured) and the formula that gave it."""

    sentences: int
    words: int
    syllables: int
    grade: float | None
    method: str = "Flesch-Kincaid grade"

    @property
    def is_measured(self) -> bool:
        """Whether a formula for this language gave a grade."""
        return self.grade is not None


# Grade formulas by ISO 639-1 language code, and the vowels whose groups count as syllables.
GRADED_LANGUAGES = {
    "en": "Flesch-Kincaid grade",
    "de": "Wiener Sachtextformel (4th) grade",
    "es": "Crawford grade",
}
_VOWEL_GROUPS = {
    "de": re.compile(r"[aeiouyäöü]+"),
    "es": re.compile(r"[aeiouáéíóúü]+"),
}


def plain_text(markdown: str) -> str:
    """``markdown`` reduced to sentences of words (markup removed, block ends made full stops)."""
    text = _LINK.sub(r"\1", markdown or "")
    text = _BULLET.sub("", text)
    text = _MARKUP.sub(" ", text)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.endswith((".", "!", "?", ":", ";", ",")):
            line += "."  # a heading, list item or paragraph without its own full stop
        lines.append(line)
    return "\n".join(lines)


def count_syllables(word: str) -> int:
    """Estimate the syllables of one English ``word`` (at least 1)."""
    word = word.lower().replace("’", "'")
    if "-" in word:
        return sum(count_syllables(part) for part in word.split("-") if part)
    if any(ch.isdigit() for ch in word):
        return 2
    word = re.sub(r"[^a-z]", "", word)
    if not word:
        return 1
    if len(word) <= 3:
        return 1
    count = len(_VOWEL_GROUP.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")):
        count -= 1  # silent final e: "share", "made"
    elif word.endswith("le") and len(word) > 2 and word[-3] in "aeiouy":
        count -= 1  # "while", "sole": the e is silent after a vowel
    elif word.endswith("es") and not word.endswith(
        ("ses", "xes", "zes", "ches", "shes", "ges", "ces")
    ):
        count -= 1 if re.search(r"[^aeiouy]es$", word) else 0  # "makes", but not "goes"
    elif word.endswith("ed") and not word.endswith(("ted", "ded")):
        count -= 1 if re.search(r"[^aeiouy]ed$", word) else 0  # "shared", but not "wanted"
    count += len(_TWO_VOWEL_SOUNDS.findall(word))
    return max(1, count)


def _without_abbreviations(text: str) -> str:
    """Lower-cased, with abbreviations' dots removed ("e.g." is one word, and ends nothing)."""
    lowered = text.lower()
    for abbreviation in _ABBREVIATIONS:
        lowered = re.sub(
            rf"(?<![^\W\d_]){re.escape(abbreviation)}", abbreviation.replace(".", ""), lowered
        )
    return lowered


def _vowel_group_syllables(word: str, language: str) -> int:
    """Syllables of ``word`` as groups of the language's vowels (at least 1)."""
    if any(ch.isdigit() for ch in word):
        return 2
    return max(1, len(_VOWEL_GROUPS[language].findall(word.lower())))


def reading_level(markdown: str, language: str = "en") -> ReadingLevel:
    """The reading grade of ``markdown`` written in ``language`` (an ISO 639-1 code), with its
    sentence, word and syllable counts; ``grade`` is None for a language not measured here."""
    language = (language or "en").lower()
    method = GRADED_LANGUAGES.get(language, "not measured for this language")
    text = (
        _without_abbreviations(plain_text(markdown)) if language == "en" else plain_text(markdown)
    )
    words = _WORD.findall(text)
    sentences = max(1, len(_SENTENCE_END.findall(text))) if words else 0
    if language not in GRADED_LANGUAGES:
        return ReadingLevel(sentences, len(words), 0, None, method)
    if not words:
        return ReadingLevel(0, 0, 0, 0.0, method)
    if language == "en":
        counts = [count_syllables(word) for word in words]
        grade = 0.39 * (len(words) / sentences) + 11.8 * (sum(counts) / len(words)) - 15.59
    else:
        counts = [_vowel_group_syllables(word, language) for word in words]
        if language == "de":
            long_share = 100 * sum(1 for c in counts if c >= 3) / len(words)
            grade = 0.2656 * (len(words) / sentences) + 0.2744 * long_share - 1.693
        else:  # "es"
            per_100 = 100 / len(words)
            grade = -0.205 * sentences * per_100 + 0.049 * sum(counts) * per_100 - 3.407
    return ReadingLevel(
        sentences=sentences,
        words=len(words),
        syllables=sum(counts),
        grade=round(max(0.0, grade), 1),
        method=method,
    )


def flesch_kincaid_grade(markdown: str) -> float:
    """The Flesch-Kincaid grade level of English ``markdown`` (0 for empty or simple text)."""
    return reading_level(markdown, "en").grade or 0.0
