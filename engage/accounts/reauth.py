"""Fresh re-authentication before sensitive actions.

Placeholder until re-authentication lands: the decorator lets every signed-in person through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def fresh_auth_required(view: F) -> F:
    """Ask the signed-in person to prove who they are again unless they did so recently."""
    return view
