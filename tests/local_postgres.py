"""Print the URL of the local PostgreSQL test database when one answers (else nothing).

``make test`` uses it when ``TEST_DATABASE_URL`` is not set, so a machine with the usual local
PostgreSQL (127.0.0.1:5432, database ``test``, user ``postgres``) runs every test on both
databases without any setting.
"""

from __future__ import annotations

import os

LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    """Print ``LOCAL_URL`` if a connection to it succeeds within two seconds."""
    if os.environ.get("ENGAGE_TEST_SQLITE_ONLY"):
        return
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=test user=postgres", connect_timeout=2
        ):
            print(LOCAL_URL)
    except Exception:  # noqa: BLE001, S110 - no local PostgreSQL: SQLite only
        pass


if __name__ == "__main__":
    main()
