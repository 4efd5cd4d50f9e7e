"""Errors the newsletter services raise; views turn them into messages people understand."""

from __future__ import annotations


class NewsletterError(Exception):
    """Something a person asked for cannot be done; the message says why, in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(NewsletterError):
    """A list, campaign, send or subscription that does not exist (or is not yours)."""


class InvalidState(NewsletterError):
    """The campaign or send is not in a state that allows this (e.g. editing while sending)."""
