"""The core variable catalogue: the variables of the network's data model that proposals
request, listed by domain. Staff add, edit and retire them; a retired variable stays for the
proposals that already requested it but can no longer be chosen.

Functions take the session, the acting person and ``now`` and never commit; the caller commits
once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.db import savepoint
from governance.errors import InvalidTransition, InvalidVariable, NotAllowed
from governance.models import CatalogueVariable, ProposalVariable

# Upper-case letters, digits and underscores, starting with a letter (e.g. "DMT_EXPOSURE").
CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,39}$")
MAX_NAME_LENGTH = 120
MAX_DOMAIN_LENGTH = 80
MAX_DESCRIPTION_LENGTH = 2000


@dataclass
class VariableDetails:
    """What staff write about a variable."""

    code: str
    name: str
    domain: str
    description: str


def active_variables_by_domain(session: Session) -> dict[str, list[CatalogueVariable]]:
    """The variables proposals may request, grouped by domain (domains and names in
    alphabetical order)."""
    grouped: dict[str, list[CatalogueVariable]] = {}
    for variable in session.scalars(
        sa.select(CatalogueVariable)
        .where(CatalogueVariable.is_active.is_(True))
        .order_by(CatalogueVariable.domain, CatalogueVariable.name, CatalogueVariable.id)
    ):
        grouped.setdefault(variable.domain, []).append(variable)
    return grouped


def all_variables(session: Session) -> list[CatalogueVariable]:
    """Every variable, retired ones included, for the staff catalogue page."""
    return list(
        session.scalars(
            sa.select(CatalogueVariable).order_by(
                CatalogueVariable.domain, CatalogueVariable.name, CatalogueVariable.id
            )
        )
    )


def _require_staff(actor: User) -> None:
    if not actor.is_staff:
        raise NotAllowed("Only coordination-centre staff can change the variable catalogue.")


def _text(value: str, what: str, limit: int) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidVariable(f"Write the variable's {what}.")
    if len(value) > limit:
        raise InvalidVariable(f"The {what} is too long: use at most {limit} characters.")
    return value


def _cleaned(
    session: Session, details: VariableDetails, variable: CatalogueVariable | None
) -> VariableDetails:
    """``details`` trimmed and checked; the code upper-cased (people type "edss")."""
    code = (details.code or "").strip().upper()
    if not CODE_PATTERN.match(code):
        raise InvalidVariable(
            "A code is 2 to 40 capital letters, digits or underscores and starts with a letter, "
            "e.g. DMT_EXPOSURE."
        )
    same_code = sa.select(CatalogueVariable.id).where(CatalogueVariable.code == code)
    if variable is not None:
        same_code = same_code.where(CatalogueVariable.id != variable.id)
    clash = session.scalar(same_code.limit(1))
    if clash is not None:
        raise InvalidVariable(f"Another variable already has the code {code}; choose another.")
    return VariableDetails(
        code=code,
        name=_text(details.name, "name", MAX_NAME_LENGTH),
        domain=_text(details.domain, "domain", MAX_DOMAIN_LENGTH),
        description=_text(details.description, "description", MAX_DESCRIPTION_LENGTH),
    )


def _flush_unique(session: Session, code: str) -> None:
    """Flush, turning a concurrent insert of the same code into the error people read."""
    try:
        with savepoint(session):
            session.flush()
    except sa.exc.IntegrityError as error:
        raise InvalidVariable(
            f"Another variable already has the code {code}; choose another."
        ) from error


def add_variable(
    session: Session, staff: User, details: VariableDetails, now: datetime
) -> CatalogueVariable:
    """Staff add an active variable to the catalogue.

    :raises NotAllowed: ``staff`` is not staff.
    :raises InvalidVariable: a field is empty or too long, the code is malformed or taken.
    """
    _require_staff(staff)
    cleaned = _cleaned(session, details, None)
    variable = CatalogueVariable(
        code=cleaned.code,
        name=cleaned.name,
        domain=cleaned.domain,
        description=cleaned.description,
        is_active=True,
        created_at=now,
    )
    session.add(variable)
    _flush_unique(session, cleaned.code)
    return variable


def is_requested(session: Session, variable: CatalogueVariable) -> bool:
    """Whether any proposal requests ``variable``."""
    return (
        session.scalar(
            sa.select(ProposalVariable.proposal_id)
            .where(ProposalVariable.variable_id == variable.id)
            .limit(1)
        )
        is not None
    )


def edit_variable(
    session: Session,
    staff: User,
    variable: CatalogueVariable,
    details: VariableDetails,
    now: datetime,
) -> None:
    """Staff change a variable's name, domain and description (and its code, until a
    proposal requests it: proposals and exports name variables by code).

    :raises NotAllowed: ``staff`` is not staff.
    :raises InvalidVariable: as for :func:`add_variable`, or the code of a requested variable
        would change.
    """
    _require_staff(staff)
    cleaned = _cleaned(session, details, variable)
    if cleaned.code != variable.code and is_requested(session, variable):
        raise InvalidVariable(
            f"Proposals already request {variable.code}, so its code cannot change; "
            "retire it and add a new variable instead."
        )
    variable.code = cleaned.code
    variable.name = cleaned.name
    variable.domain = cleaned.domain
    variable.description = cleaned.description
    _flush_unique(session, cleaned.code)


def retire_variable(
    session: Session, staff: User, variable: CatalogueVariable, now: datetime
) -> None:
    """Staff retire a variable: new proposals can no longer request it; those that did keep it.

    :raises InvalidTransition: it is already retired.
    """
    _require_staff(staff)
    if not variable.is_active:
        raise InvalidTransition(f"{variable.code} is already retired, so nothing was changed.")
    variable.is_active = False
    session.flush()


def reinstate_variable(
    session: Session, staff: User, variable: CatalogueVariable, now: datetime
) -> None:
    """Staff make a retired variable available to new proposals again.

    :raises InvalidTransition: it is not retired.
    """
    _require_staff(staff)
    if variable.is_active:
        raise InvalidTransition(f"{variable.code} is not retired, so nothing was changed.")
    variable.is_active = True
    session.flush()
