"""GA4GH Data Use Ontology (DUO) terms a consent scope may carry.

Scopes store the shorthand ("DS-MS", "HMB", …); exports use the term's DUO identifier. A
disease-specific term carries its disease as a MONDO identifier.
"""

from __future__ import annotations

from dataclasses import dataclass

DUO_SYSTEM = "http://purl.obolibrary.org/obo/duo.owl"
MONDO_SYSTEM = "http://purl.obolibrary.org/obo/mondo.owl"


@dataclass(frozen=True)
class DuoTerm:
    """One DUO term: shorthand, identifier, label and, for DS, the disease."""

    shorthand: str
    duo_id: str
    label: str
    disease_id: str | None = None
    disease_label: str | None = None


DUO_TERMS: dict[str, DuoTerm] = {
    term.shorthand: term
    for term in (
        DuoTerm("GRU", "DUO:0000042", "general research use"),
        DuoTerm("HMB", "DUO:0000006", "health or medical or biomedical research"),
        DuoTerm(
            "DS-MS",
            "DUO:0000007",
            "disease specific research",
            disease_id="MONDO:0005301",
            disease_label="multiple sclerosis",
        ),
        DuoTerm("NPU", "DUO:0000045", "not for profit organisation use only"),
        DuoTerm("NCU", "DUO:0000046", "non-commercial use only"),
        DuoTerm("IRB", "DUO:0000021", "ethics approval required"),
        DuoTerm("PUB", "DUO:0000019", "publication required"),
        DuoTerm("COL", "DUO:0000020", "collaboration required"),
        DuoTerm("GSO", "DUO:0000016", "genetic studies only"),
        DuoTerm("RTN", "DUO:0000029", "return to database or resource"),
    )
}


def duo_choices() -> list[tuple[str, str]]:
    """(shorthand, label) pairs for a form, with "none" first."""
    return [("", "None fits")] + [
        (
            term.shorthand,
            f"{term.shorthand}: {term.label}"
            + (f" ({term.disease_label})" if term.disease_label else ""),
        )
        for term in DUO_TERMS.values()
    ]
