"""Account tables."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.crypto import EncryptedText
from engage.db import Base, UTCDateTime
from engage.enums import LabelledEnum, enum_column
from engage.roles import SIGN_UP_ROLE_CHOICES, CustodianStatus, Role

__all__ = [
    "SIGN_UP_ROLE_CHOICES",
    "CustodianStatus",
    "DataRequest",
    "DataRequestKind",
    "DataRequestStatus",
    "RecoveryCode",
    "Role",
    "User",
    "UserSession",
]

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
    role: Mapped[Role] = mapped_column(enum_column(Role))
    # ISO 3166-1 alpha-2 country code.
    country: Mapped[str] = mapped_column(sa.String(2))
    # Preferred language, an ISO 639-1 code.
    language: Mapped[str] = mapped_column(sa.String(8))
    # Clinicians: what they do and where (encrypted at rest, see engage/crypto.py).
    profession: Mapped[str | None] = mapped_column(EncryptedText())
    institution: Mapped[str | None] = mapped_column(EncryptedText())
    # Organisation members: the MS organisation's name (encrypted at rest).
    organisation_name: Mapped[str | None] = mapped_column(EncryptedText())
    # Custodians: the registry asked for (pending) or bound to (approved).
    custodian_registry_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("registries.id", ondelete="RESTRICT")
    )
    custodian_status: Mapped[CustodianStatus | None] = mapped_column(enum_column(CustodianStatus))
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
    # A new address the person asked for, until they confirm it from the emailed link.
    pending_email: Mapped[str | None] = mapped_column(sa.String(254))
    # Two-factor sign-in: the TOTP secret (encrypted at rest), when enrolment was confirmed,
    # and the last time-step counter accepted (a code is never accepted twice).
    totp_secret: Mapped[str | None] = mapped_column(EncryptedText())
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_last_counter: Mapped[int | None] = mapped_column(sa.BigInteger())
    # When the person deleted their account (identity erased; the row stays for tallies).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

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
        """Session identity: the account id and the random key of this browser's session kept
        on the server (``engage.accounts.sessions``), so signing out ends it everywhere it was
        copied. Only a signed-in instance has a key (see ``sessions.attach``)."""
        key = getattr(self, "session_key", None)
        if not key:
            raise LookupError("no server-side session: sign in through signin.finish_sign_in")
        return f"{self.id}:{key}"

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


class UserSession(Base):
    """One signed-in browser: the session cookie and the remember-me cookie name it by a random
    key, of which only a hash is stored. Signing out ends it here, so a copied cookie stops
    working at once."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 of the random session key (hex); the key itself is only in the cookies.
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # After this the session no longer signs anyone in (idle or absolute limit).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Whether "keep me signed in" was chosen (a remember-me cookie exists).
    remember: Mapped[bool] = mapped_column(default=False)
    # What the person sees in their list of sessions: browser and address at sign-in.
    user_agent: Mapped[str] = mapped_column(sa.String(200), default="")
    ip_address: Mapped[str] = mapped_column(sa.String(45), default="")
    # When and why it ended (sign-out, sign-out-everywhere, password-changed, expired, ...).
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_reason: Mapped[str | None] = mapped_column(sa.String(40))

    __table_args__ = (sa.Index("ix_user_sessions_user_id_ended_at", "user_id", "ended_at"),)


class RecoveryCode(Base):
    """A one-time code that signs in instead of an authenticator code (only its hash)."""

    __tablename__ = "user_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 of the normalised code (hex): codes are random, 50+ bits each.
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (sa.UniqueConstraint("user_id", "code_hash"),)


class DataRequestKind(LabelledEnum):
    """What a person asked for under their data rights."""

    EXPORT = ("export", "Download of my data")
    ERASURE = ("erasure", "Deletion of my account")


class DataRequestStatus(LabelledEnum):
    """Where a data-rights request stands."""

    REQUESTED = ("requested", "Requested")
    COMPLETED = ("completed", "Completed")
    FAILED = ("failed", "Failed")


class DataRequest(Base):
    """A person's request to download their data or delete their account, and its outcome
    (staff see these on the data requests page)."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Kept after erasure: the row then names a pseudonymised account.
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    kind: Mapped[DataRequestKind] = mapped_column(enum_column(DataRequestKind))
    status: Mapped[DataRequestStatus] = mapped_column(enum_column(DataRequestStatus))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What was done, in a sentence (never personal data).
    outcome: Mapped[str] = mapped_column(sa.String(500), default="")

    __table_args__ = (
        sa.Index("ix_data_requests_status_requested_at", "status", "requested_at"),
        sa.Index("ix_data_requests_user_id", "user_id"),
    )
