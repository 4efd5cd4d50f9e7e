"""Moved to :mod:`engage.choices` (the core); this name stays only until ``engage.consent``
imports from there."""

from engage.choices import LANGUAGE_CHOICES, country_choices, country_names

__all__ = ["LANGUAGE_CHOICES", "country_choices", "country_names"]
