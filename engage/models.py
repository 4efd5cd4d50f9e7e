"""Imports every model module so ``Base.metadata`` knows all tables (Alembic, tests)."""

from engage.accounts import models as accounts_models  # noqa: F401
from engage.audit import AuditEvent  # noqa: F401
from engage.consent import models as consent_models  # noqa: F401
from engage.outbox import OutboxMessage  # noqa: F401
from engage.registries import models as registries_models  # noqa: F401
from engage.topics import models as topics_models  # noqa: F401
