"""Account tables."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.db import Base, UTCDateTime
from engage.enums import enum_column
from engage.roles import SIGN_UP_ROLE_CHOICES, CustodianStatus, Role

__all__ = ["SIGN_UP_ROLE_CHOICES", "CustodianStatus", "Role", "User"]

if TYPE_CHECKING:
    from engage.registries.models import Registry


class User(Base):
    """A person with an account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased; unique across all accounts.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(80))
    # argon2id hash; never logged or shown.
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[Role] = mapped_column(
        enum_column(Role)
    )
    # ISO 3166-1 alpha-2 country code.
    country: Mapped[str] = mapped_column(sa.String(2))
    # Preferred language, an ISO 639-1 code.
    language: Mapped[str] = mapped_column(sa.String(8))
    # Clinicians: what they do and where.
    profession: Mapped[str | None] = mapped_column(sa.String(120))
    institution: Mapped[str | None] = mapped_column(sa.String(200))
    # Organisation members: the MS organisation's name.
    organisation_name: Mapped[str | None] = mapped_column(sa.String(200))
    # Custodians: the registry asked for (pending) or bound to (approved).
    custodian_registry_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("registries.id", ondelete="RESTRICT")
    )
    custodian_status: Mapped[CustodianStatus | None] = mapped_column(
        enum_column(CustodianStatus)
    )
    # When the email address was confirmed; None until then.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When staff confirmed a clinician's professional claim; None until then.
    clinician_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Deactivated accounts cannot sign in.
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped on password change: ends every other session and remember-me cookie.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    custodian_registry: Mapped[Registry | None] = relationship(lazy="joined")

    __table_args__ = (sa.Index("ix_users_role_created_at", "role", "created_at"),)

    # Flask-Login interface -------------------------------------------------------------
    @property
    def is_authenticated(self) -> bool:
        """Every loaded user is authenticated (anonymous visitors are another class)."""
        return True

    @property
    def is_anonymous(self) -> bool:
        """A loaded user is never anonymous."""
        return False

    def get_id(self) -> str:
        """Session identity: id and session version, so a password change ends old sessions."""
        return f"{self.id}:{self.session_version}"

    # Role helpers ----------------------------------------------------------------------
    @property
    def is_email_verified(self) -> bool:
        """True once the email address has been confirmed."""
        return self.email_verified_at is not None

    @property
    def is_verified_clinician(self) -> bool:
        """True for clinicians whose professional claim staff have confirmed."""
        return self.role == Role.CLINICIAN and self.clinician_verified_at is not None

    @property
    def is_approved_custodian(self) -> bool:
        """True for custodians that staff have approved and bound to a registry."""
        return (
            self.role == Role.CUSTODIAN
            and self.custodian_status == CustodianStatus.APPROVED
            and self.custodian_registry_id is not None
        )

    @property
    def is_staff(self) -> bool:
        """True for coordination-centre staff."""
        return self.role == Role.STAFF

