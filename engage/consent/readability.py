"""Reading level of a plain-language summary: the Flesch-Kincaid grade level, computed here.

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
    """The counts behind a Flesch-Kincaid grade, and the grade itself."""

    sentences: int
    words: int
    syllables: int
    grade: float


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


def reading_level(markdown: str) -> ReadingLevel:
    """The Flesch-Kincaid grade of ``markdown`` and its sentence, word and syllable counts."""
    text = _without_abbreviations(plain_text(markdown))
    words = _WORD.findall(text)
    if not words:
        return ReadingLevel(sentences=0, words=0, syllables=0, grade=0.0)
    sentences = max(1, len(_SENTENCE_END.findall(text)))
    syllables = sum(count_syllables(word) for word in words)
    grade = 0.39 * (len(words) / sentences) + 11.8 * (syllables / len(words)) - 15.59
    return ReadingLevel(
        sentences=sentences,
        words=len(words),
        syllables=syllables,
        grade=round(max(0.0, grade), 1),
    )


def flesch_kincaid_grade(markdown: str) -> float:
    """The Flesch-Kincaid grade level of ``markdown`` (0 for empty or very simple text)."""
    return reading_level(markdown).grade
