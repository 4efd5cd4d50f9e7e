"""Benchmark of consent on PostgreSQL: cohort counts, the dashboard and recording a change.

Data sets (participants × consent events each):

- large:   1,000,000 participants × 10 events = 10,000,000 events (the target size);
- small:      10,000 participants × 10 events =    100,000 events;
- long:       10,000 participants × 1,000 events = 10,000,000 events (the small data set's
  participants with a hundred times their history).

Each participant first decides on the 8 scopes of the seed form (8 events), then changes
optional scopes (the other events); registry enrolments spread participants over 6 registries
(every tenth in two). Current choices, the permitted-scope masks and their per-registry copies
are then derived from the events with set-based SQL, as the services would have left them.

For each data set it prints the median (and 95th percentile) of: the cohort count of a 3-scope
purpose (MS research with genomic and imaging data) overall and per registry, through
``engage.consent.queries.count_permitting``; one participant's dashboard and recording one
change, both through the Flask test client (server-side time, no network). Then the ratios
large/small (participants × 100, history × 100) and long/small (history × 100 only): the count
reads the current-choice tables, so its cost follows participants, never history.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/consent.py            # BENCH_SETS=small,long,large by default

It works in schemas of its own (``engage_bench_consent_*``) and drops them at the end. The
bulk load skips foreign-key triggers (``session_replication_role = replica``; the data is
consistent by construction); event hashes form proper chains (each ``prev_hash`` is the
previous hash) but hash a placeholder, not the canonical event, and receipt documents are
placeholders: nothing measured reads them.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engage.accounts import services as account_services  # noqa: E402
from engage.accounts.models import Role  # noqa: E402
from engage.app import create_app  # noqa: E402
from engage.consent import queries  # noqa: E402
from engage.consent.seed import FIRST_SCOPES, ensure_first_form  # noqa: E402
from engage.db import Database  # noqa: E402
from engage.migrate import alembic_config  # noqa: E402
from engage.timeutil import utcnow  # noqa: E402

BASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPEATS = int(os.environ.get("BENCH_REPEATS", "50"))
SIZES = {
    "small": {"participants": 10_000, "events_each": 10},
    "long": {"participants": 10_000, "events_each": 1_000},
    "large": {"participants": 1_000_000, "events_each": 10},
}
SETS = [name.strip() for name in os.environ.get("BENCH_SETS", "small,long,large").split(",")]
PURPOSE = ["MS_RESEARCH", "GENOMIC_DATA", "IMAGING_DATA"]
CODES = [scope.code for scope in FIRST_SCOPES]
# How often each scope is allowed at first (required ones almost always).
PERMIT_RATE = [0.97, 0.95, 0.70, 0.40, 0.55, 0.65, 0.60, 0.50]
REGISTRIES = 6
FAKE_HASH = "$argon2id$v=19$m=8,t=1,p=1$bm90LWEtcmVhbC1zYWx0$bm90LWEtcmVhbC1oYXNo"


def schema_url(schema: str) -> str:
    url = sa.engine.make_url(BASE_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def _sql_array(values: list) -> str:
    return "ARRAY[" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values) + "]"


def build(app, participants: int, events_each: int) -> dict[str, float]:
    """Publish the seed form through the services, then bulk-load everything else in SQL."""
    timings = {}
    started = time.perf_counter()
    with app.app_context():
        session = Database.new_session(app)
        staff = account_services.create_user_by_cli(
            session,
            email="staff@bench.example",
            password="a bench staff passphrase",
            role=Role.STAFF,
            display_name="Bench staff",
            country="SE",
            language="en",
            now=utcnow(),
        )
        ensure_first_form(session, staff, utcnow(), 8)
        session.commit()
        session.close()
    codes = _sql_array([f"{code}" for code in CODES])
    rates = _sql_array(PERMIT_RATE)
    receipts_each = math.ceil(events_each / 8)
    engine = Database.engine(app)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            sa.text(
                """
                INSERT INTO users (email, display_name, password_hash, role, country, language,
                                   is_active, session_version, created_at, email_verified_at)
                SELECT 'person' || g || '@bench.example', 'Person ' || g, :hash, 'participant',
                       'SE', 'en', true, 1, now(), now()
                FROM generate_series(1, :n) AS g
                """
            ),
            {"hash": FAKE_HASH, "n": participants},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO registries (code, name, country, is_active, created_at)
                SELECT 'REG' || g, 'Registry ' || g, 'SE', true, now()
                FROM generate_series(1, :k) AS g
                """
            ),
            {"k": REGISTRIES},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO registry_enrolments (user_id, registry_id, created_at)
                SELECT u.id, r.first + (u.id + x) % :k, now()
                FROM users u
                CROSS JOIN (SELECT min(id) AS first FROM registries) r
                CROSS JOIN generate_series(0, 1) AS x
                WHERE u.role = 'participant' AND (x = 0 OR u.id % 10 = 0)
                """
            ),
            {"k": REGISTRIES},
        )
        timings["participants"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(
            sa.text(
                """
                INSERT INTO consent_receipts (id, user_id, form_version_id, method, actor_id,
                                              issued_at, document)
                SELECT md5(u.id || ':' || r)::uuid::text, u.id, 1, 'online', NULL,
                       now() - interval '400 days' + r * interval '1 day',
                       '{"format": "engage-consent-receipt/1", "placeholder": true}'
                FROM users u CROSS JOIN generate_series(0, :receipts - 1) AS r
                WHERE u.role = 'participant'
                """
            ),
            {"receipts": receipts_each},
        )
        # Events 1-8 decide every scope; later ones change the optional scopes in turn.
        conn.execute(
            sa.text(
                f"""
                INSERT INTO consent_events (user_id, seq, scope_code, decision, form_version_id,
                                            scope_revision, occurred_at, method, actor_id,
                                            receipt_id, prev_hash, hash)
                SELECT u.id, s.seq,
                       CASE WHEN s.seq <= 8 THEN ({codes})[s.seq]
                            ELSE ({codes})[3 + (s.seq - 9) % 6] END,
                       CASE WHEN s.seq <= 8 THEN
                                CASE WHEN random() < ({rates})[s.seq] THEN 'permit'
                                     ELSE 'deny' END
                            WHEN random() < 0.5 THEN 'permit' ELSE 'withdraw' END,
                       1, 1,
                       now() - interval '400 days' + ((s.seq - 1) / 8) * interval '1 day'
                           + s.seq * interval '1 second',
                       'online', NULL, md5(u.id || ':' || ((s.seq - 1) / 8))::uuid::text,
                       CASE WHEN s.seq = 1 THEN repeat('0', 64)
                            ELSE encode(sha256(convert_to(u.id || ':' || (s.seq - 1), 'UTF8')),
                                        'hex') END,
                       encode(sha256(convert_to(u.id || ':' || s.seq, 'UTF8')), 'hex')
                FROM users u CROSS JOIN generate_series(1, :k) AS s(seq)
                WHERE u.role = 'participant'
                ORDER BY u.id, s.seq
                """
            ),
            {"k": events_each},
        )
        timings["events"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(
            sa.text(
                """
                INSERT INTO consent_choices (user_id, scope_code, decision, scope_revision,
                                             form_version_id, event_id, decided_at)
                SELECT DISTINCT ON (user_id, scope_code)
                       user_id, scope_code, decision, scope_revision, form_version_id, id,
                       occurred_at
                FROM consent_events
                ORDER BY user_id, scope_code, seq DESC
                """
            )
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO consent_participants (user_id, pseudonym, permitted_mask,
                                                  reviewed_version_id, reviewed_at,
                                                  reminder_count, created_at)
                SELECT c.user_id, md5('participant:' || c.user_id)::uuid::text,
                       coalesce(sum(1::bigint << b.bit) FILTER (WHERE c.decision = 'permit'), 0),
                       1, now(), 0, now()
                FROM consent_choices c JOIN consent_scope_codes b ON b.code = c.scope_code
                GROUP BY c.user_id
                """
            )
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO consent_registry_masks (user_id, registry_id, permitted_mask)
                SELECT e.user_id, e.registry_id, p.permitted_mask
                FROM registry_enrolments e JOIN consent_participants p ON p.user_id = e.user_id
                """
            )
        )
        timings["current tables"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    timings["vacuum analyze"] = time.perf_counter() - started
    return timings


def _plan(session, registry_id: int | None) -> str:
    """The scans PostgreSQL plans for the count (to show it never reads consent_events)."""
    query, _user_id = queries._permitting(session, PURPOSE, registry_id)
    count = sa.select(sa.func.count()).select_from(query.subquery())
    sql = str(
        count.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    )
    lines = [row[0] for row in session.execute(sa.text("EXPLAIN " + sql))]
    scans = [line.strip().lstrip("-> ").split("  (")[0] for line in lines if "Scan" in line]
    return "; ".join(scans)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds, of ``repeats`` calls after a warm-up."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def measure(name: str, size: dict[str, int]) -> dict[str, tuple[float, float]]:
    schema = f"engage_bench_consent_{name}"
    admin = sa.create_engine(schema_url("public"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    app = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": schema_url(schema),
            "WTF_CSRF_ENABLED": False,  # the benchmark posts without reading forms first
            "MAIL_BACKEND": "console",
        }
    )
    try:
        command.upgrade(alembic_config(app), "head")
        started = time.perf_counter()
        steps = build(app, **size)
        engine = Database.engine(app)
        with engine.connect() as conn:
            events = conn.execute(sa.text("SELECT count(*) FROM consent_events")).scalar()
            people = conn.execute(sa.text("SELECT count(*) FROM consent_participants")).scalar()
            person = conn.execute(sa.text("SELECT min(user_id) FROM consent_participants")).scalar()
            registries = list(conn.execute(sa.text("SELECT id FROM registries ORDER BY id")))
        print(
            f"{name}: {people:,} participants, {events:,} consent events built in "
            f"{time.perf_counter() - started:.1f} s ("
            + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps.items())
            + ")",
            flush=True,
        )
        results: dict[str, tuple[float, float]] = {}
        with app.app_context():
            session = Database.new_session(app)
            total = queries.count_permitting(session, PURPOSE)
            results["count, overall"] = timed(
                lambda: queries.count_permitting(session, PURPOSE), REPEATS
            )
            per_registry = []
            for (registry_id,) in registries:
                n = queries.count_permitting(session, PURPOSE, registry_id=registry_id)
                per_registry.append(n)
                results[f"count, registry {registry_id}"] = timed(
                    lambda r=registry_id: queries.count_permitting(session, PURPOSE, registry_id=r),
                    REPEATS,
                )
            plans = {
                "overall": _plan(session, None),
                "registry": _plan(session, registries[0][0]),
            }
            session.close()
        print(
            f"  {total:,} participants permit {' + '.join(PURPOSE)} (and the required scopes);"
            f" per registry: {', '.join(f'{n:,}' for n in per_registry)}",
            flush=True,
        )
        for label, plan in plans.items():
            print(f"  plan of the count ({label}): {plan}", flush=True)
        client = app.test_client()
        with client.session_transaction() as cookie:
            cookie["_user_id"] = f"{person}:1"
            cookie["_fresh"] = True

        def dashboard():
            assert client.get("/consent").status_code == 200

        results["dashboard"] = timed(dashboard, REPEATS * 2)

        state_session = Database.new_session(app)
        version_id = state_session.scalar(
            sa.text("SELECT id FROM consent_form_versions WHERE status = 'published'")
        )
        flips = iter(range(10**9))

        def record_change():
            # The page's state token is read outside the timing in a real browser too.
            state = queries.current_state(state_session, person)
            state_session.rollback()
            decision = "permit" if next(flips) % 2 else "deny"
            data = {
                "version_id": version_id,
                "state": state,
                "scope": "GENOMIC_DATA",
                "decision": decision,
            }
            start = time.perf_counter()
            response = client.post("/consent/choice", data=data)
            elapsed = time.perf_counter() - start
            assert response.status_code == 303, response.get_data(as_text=True)[:500]
            return elapsed

        for _ in range(3):
            record_change()
        samples = sorted(record_change() * 1000 for _ in range(REPEATS * 2))
        results["record one change"] = (
            statistics.median(samples),
            samples[max(0, int(len(samples) * 0.95) - 1)],
        )
        state_session.close()
        for key, (median, p95) in results.items():
            print(f"  {key:<22} median {median:8.2f} ms   p95 {p95:8.2f} ms", flush=True)
        return results
    finally:
        Database.engine(app).dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _summary(results: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Medians of the three measures: overall count, slowest registry count, page, change."""
    registry = [median for key, (median, _p95) in results.items() if key.startswith("count, reg")]
    return {
        "count, overall": results["count, overall"][0],
        "count, per registry (slowest)": max(registry),
        "count, per registry (median)": statistics.median(registry),
        "dashboard": results["dashboard"][0],
        "record one change": results["record one change"][0],
    }


def main() -> None:
    medians = {}
    for name in SETS:
        medians[name] = _summary(measure(name, SIZES[name]))
        print(flush=True)
    columns = [name for name in ("small", "long", "large") if name in medians]
    header = f"{'median (ms)':<30}" + "".join(f"{name:>12}" for name in columns)
    ratios = []
    if {"small", "long"} <= medians.keys():
        ratios.append(("long/small", "long", "small"))
    if {"small", "large"} <= medians.keys():
        ratios.append(("large/small", "large", "small"))
    header += "".join(f"{label:>13}" for label, _a, _b in ratios)
    print(header)
    for key in medians[columns[0]]:
        line = f"{key:<30}" + "".join(f"{medians[name][key]:>12.2f}" for name in columns)
        line += "".join(f"{medians[a][key] / medians[b][key]:>13.2f}" for _l, a, b in ratios)
        print(line)
    print(
        "\nsmall: 10,000 participants, 100,000 events; long: 10,000 participants, 10,000,000 "
        "events (history x100); large: 1,000,000 participants, 10,000,000 events.\n"
        f"{REPEATS} count queries per registry and overall, {REPEATS * 2} dashboards and "
        "changes; pages and changes are server-side times through the Flask test client."
    )


if __name__ == "__main__":
    main()
