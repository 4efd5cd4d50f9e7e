"""Country and language choices, shared by every form and command that asks for them."""

from __future__ import annotations

import functools

import pycountry

LANGUAGE_CHOICES = [
    ("en", "English"),
    ("cs", "Čeština (Czech)"),
    ("da", "Dansk (Danish)"),
    ("de", "Deutsch (German)"),
    ("es", "Español (Spanish)"),
    ("fr", "Français (French)"),
    ("it", "Italiano (Italian)"),
    ("nl", "Nederlands (Dutch)"),
    ("pl", "Polski (Polish)"),
    ("pt", "Português (Portuguese)"),
    ("sv", "Svenska (Swedish)"),
    ("ar", "العربية (Arabic)"),
]


@functools.cache
def country_choices() -> list[tuple[str, str]]:
    """Every ISO 3166-1 country as (alpha-2 code, common name), sorted by name."""
    countries = [
        (c.alpha_2, getattr(c, "common_name", None) or c.name) for c in pycountry.countries
    ]
    return sorted(countries, key=lambda pair: pair[1])


@functools.cache
def country_names() -> dict[str, str]:
    """Map of alpha-2 code to country name (plus "INT" for international registries)."""
    names = dict(country_choices())
    names["INT"] = "International"
    return names
