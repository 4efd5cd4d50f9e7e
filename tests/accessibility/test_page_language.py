"""Pages are written in English, so they say so whatever language a person prefers for research
materials: screen readers pick their voice from ``<html lang>`` (WCAG 3.1.1)."""

from __future__ import annotations

import sqlalchemy as sa

from engage.accounts.models import Role, User
from tests.conftest import sign_in


def test_pages_say_they_are_english_whatever_the_preferred_language(
    client, make_user, session
) -> None:
    user = make_user(Role.PARTICIPANT)
    session.execute(sa.update(User).where(User.id == user.id).values(language="de"))
    session.commit()
    assert '<html lang="en">' in client.get("/").get_data(as_text=True)
    sign_in(client, user)
    for path in ("/", "/topics", "/account", "/consent"):
        page = client.get(path).get_data(as_text=True)
        assert '<html lang="en">' in page, path
    assert session.scalar(sa.select(User.language).where(User.id == user.id)) == "de"
