"""Registry tables: the network's registries and who says they are enrolled in which."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.db import Base, UTCDateTime


class Registry(Base):
    """A member registry of the network (it holds the data; its custodians decide for it)."""

    __tablename__ = "registries"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Short stable code, e.g. "SMSREG"; used in URLs and exports.
    code: Mapped[str] = mapped_column(sa.String(20), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # ISO 3166-1 alpha-2 country code, or "INT" for an international registry.
    country: Mapped[str] = mapped_column(sa.String(3))
    # Registries are retired, never deleted: decisions and enrolments refer to them.
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Counts of people below this are shown as "fewer than N" (small-cell suppression).
    small_cell_threshold: Mapped[int] = mapped_column(default=5, server_default="5")


class RegistryEnrolment(Base):
    """A participant's statement that they are enrolled in a registry."""

    __tablename__ = "registry_enrolments"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    registry_id: Mapped[int] = mapped_column(sa.ForeignKey("registries.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.UniqueConstraint("user_id", "registry_id"),)
