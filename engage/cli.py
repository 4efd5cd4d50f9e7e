"""The ``engage`` console script: a FlaskGroup over ``create_app``, whose commands the
composition root adds to ``app.cli`` (``engage.commands`` and each package's ``cli``).

Imports point one way: this module imports the app, and the app never imports it.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup

from engage.app import create_app
from engage.settings import ConfigurationError


def _create_app() -> Flask:
    try:
        return create_app()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def cli() -> None:
    """Engage: the participation platform of an MS research network."""
