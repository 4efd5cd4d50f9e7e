"""Benchmark of the governance queries on PostgreSQL: a registry's inbox, a proposal's decision
matrix and its eligible cohorts across the registries it was sent to.

Target data set ("full"): 200 registries, 2,000 proposals (each sent to 20-50 registries, so
about 70,000 decision threads), 100,000 decision events and 1,000,000 participants (every tenth
enrolled in two registries). The comparison set has 1/``--scale`` (default 1/100) of the
proposals, decision events and participants; the 200 registries and each proposal's fan-out
stay as they are, so both sets measure the same two proposals (the first sent to 20
registries, the second to 50) and the ratio shows what the data size alone costs.

For each set it prints the rows actually built (read back from the database) and how long
building took; then for each measured call the median and 95th percentile in ms and the
number of SQL statements it ran (counted with a ``before_cursor_execute`` listener):

- ``governance.queries.registry_inbox`` as the inbox page asks for it (one page of
  ``INBOX_PAGE_SIZE``) for the registry with the most threads and the one with the fewest (one
  statement, whatever the number of threads);
- ``governance.queries.matrix`` of the 20-registry and the 50-registry proposal;
- ``governance.cohort.cohorts_for`` of the same two proposals (every registry's eligible
  cohort; if its statement count grows with the number of registries, the output lists the
  statements that repeat).

Then the full/small ratios and the issue's goals (p95 < 50 ms, ratio of medians <= 1.5,
statements constant in the number of registries), each printed as met or missed; the
benchmark never fails on a time.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/governance.py [--scale 100] [--quick] [--keep] [--explain]

``--quick`` builds 1/10 of the target and 1/1000 of it (same 200 registries, 20 and 5 calls per
measure) for a smoke run in well under a minute. ``--explain`` prints EXPLAIN ANALYZE of the
statements each call ran on the larger set. It works in schemas of its own
(``engage_bench_governance_*``), dropped at the end unless ``--keep``.

Each call runs in a fresh session (as a page request would), on proposal objects loaded
beforehand. The bulk load skips foreign-key triggers (``session_replication_role = replica``;
the data is consistent by construction). Decision events do not form valid hash chains (each
hash is a placeholder) and participants have consent masks but no consent events, choices or
receipts: nothing measured reads them.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engage.accounts import services as account_services  # noqa: E402
from engage.accounts.models import Role  # noqa: E402
from engage.app import create_app  # noqa: E402
from engage.consent.seed import ensure_first_form  # noqa: E402
from engage.db import Database  # noqa: E402
from engage.migrate import alembic_config  # noqa: E402
from engage.timeutil import utcnow  # noqa: E402
from governance import cohort, queries  # noqa: E402
from governance.models import Proposal  # noqa: E402


def _load_consent_bench():
    """bench/consent.py, for its schema URL helper, throwaway hash and permit rates."""
    spec = importlib.util.spec_from_file_location(
        "bench_consent", Path(__file__).resolve().parent / "consent.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


consent_bench = _load_consent_bench()
schema_url = consent_bench.schema_url

TARGET = {"registries": 200, "proposals": 2_000, "events": 100_000, "participants": 1_000_000}
# Each proposal is sent to this many consecutive registries (the first two: 20 and 50).
FAN_OUT_MIN, FAN_OUT_MAX = 20, 50
P95_GOAL_MS = 50.0
RATIO_GOAL = 1.5


def sizes(divisor: int, registries: int) -> dict[str, int]:
    """The target divided by ``divisor``; registries are never divided (see the docstring)."""
    return {
        "registries": registries,
        "proposals": max(2, TARGET["proposals"] // divisor),
        "events": max(1, TARGET["events"] // divisor),
        "participants": max(registries, TARGET["participants"] // divisor),
    }


# Building ------------------------------------------------------------------------------------


def _publish_form(app) -> tuple[int, int, dict[str, int]]:
    """Publish the seed consent form through the services: staff id, version id, scope bits."""
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
        version = ensure_first_form(session, staff, utcnow(), 8)
        session.commit()
        bits = {
            code: bit
            for code, bit in session.execute(sa.text("SELECT code, bit FROM consent_scope_codes"))
        }
        ids = staff.id, version.id
        session.close()
    return ids[0], ids[1], bits


def build(app, registries: int, proposals: int, events: int, participants: int) -> dict:
    """Fill the schema with set-based SQL; return the seconds each step took."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    staff_id, version_id, bits = _publish_form(app)
    # Each participant's mask: every scope of the seed form allowed at bench/consent.py's rates.
    mask = " + ".join(
        f"CASE WHEN random() < {rate} THEN {1 << bits[code]}::bigint ELSE 0 END"
        for code, rate in zip(consent_bench.CODES, consent_bench.PERMIT_RATE, strict=True)
    )
    optional = consent_bench._sql_array(consent_bench.CODES[2:])
    engine = Database.engine(app)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        run = conn.execute
        run(
            sa.text(
                """
                INSERT INTO registries (code, name, country, is_active, created_at,
                                        small_cell_threshold)
                SELECT 'REG' || g, 'Registry ' || lpad(g::text, 3, '0'), 'SE', true, now(), 5
                FROM generate_series(1, :k) AS g
                """
            ),
            {"k": registries},
        )
        run(
            sa.text(
                """
                INSERT INTO users (email, display_name, password_hash, role, country, language,
                                   is_active, session_version, created_at, email_verified_at)
                SELECT 'person' || g || '@bench.example', 'Person ' || g, :hash, 'participant',
                       'SE', 'en', true, 1, now(), now()
                FROM generate_series(1, :n) AS g
                """
            ),
            {"hash": consent_bench.FAKE_HASH, "n": participants},
        )
        # Everyone in one registry, every tenth in a second one too.
        run(
            sa.text(
                """
                INSERT INTO registry_enrolments (user_id, registry_id, created_at)
                SELECT u.id, r.first + CASE WHEN x = 0 THEN u.id % :k
                                            ELSE (u.id + 1 + (u.id / 10) % (:k - 1)) % :k END,
                       now()
                FROM users u
                CROSS JOIN (SELECT min(id) AS first FROM registries) r
                CROSS JOIN generate_series(0, 1) AS x
                WHERE u.role = 'participant' AND (x = 0 OR u.id % 10 = 0)
                """
            ),
            {"k": registries},
        )
        run(
            sa.text(
                f"""
                INSERT INTO consent_participants (user_id, pseudonym, permitted_mask,
                                                  reviewed_version_id, reviewed_at,
                                                  reminder_count, created_at)
                SELECT u.id, md5('participant:' || u.id)::uuid::text, {mask}, :version, now(),
                       0, now()
                FROM users u WHERE u.role = 'participant'
                """
            ),
            {"version": version_id},
        )
        run(
            sa.text(
                """
                INSERT INTO consent_registry_masks (user_id, registry_id, permitted_mask)
                SELECT e.user_id, e.registry_id, p.permitted_mask
                FROM registry_enrolments e JOIN consent_participants p ON p.user_id = e.user_id
                """
            )
        )
        timings["participants"] = time.perf_counter() - started
        started = time.perf_counter()
        # Sent 0-89 days ago with 60 days to decide: some deadlines passed, most still open.
        run(
            sa.text(
                """
                INSERT INTO governance_proposals (
                    title, lead_researcher, institution, sponsor, plain_summary,
                    scientific_summary, language, analysis_mode, ethics_reference, topic_id,
                    decision_deadline, proposer_id, status, created_at, updated_at, sent_at)
                SELECT 'Project ' || g || ': does treatment ' || g || ' slow MS progression?',
                       'Dr Lead ' || g, 'University ' || g % 40, 'Sponsor ' || g % 15,
                       'What project ' || g || ' asks, in plain words.',
                       'The scientific case of project ' || g || '.', 'en',
                       CASE WHEN g % 3 = 0 THEN 'federated' ELSE 'pooled' END,
                       'EC-2026-' || g, NULL,
                       now() - (g % 90) * interval '1 day' + interval '60 days', :proposer,
                       'sent', now() - (g % 90 + 30) * interval '1 day',
                       now() - (g % 90) * interval '1 day', now() - (g % 90) * interval '1 day'
                FROM generate_series(1, :n) AS g
                """
            ),
            {"n": proposals, "proposer": staff_id},
        )
        # MS research plus one or two optional scopes.
        run(
            sa.text(
                f"""
                INSERT INTO governance_proposal_scopes (proposal_id, scope_code)
                SELECT DISTINCT p.id, s.code
                FROM governance_proposals p
                CROSS JOIN LATERAL (
                    VALUES ('MS_RESEARCH'), (({optional})[1 + p.id % 6]),
                           (CASE WHEN p.id % 2 = 0 THEN ({optional})[1 + (p.id + 3) % 6] END)
                ) AS s(code)
                WHERE s.code IS NOT NULL
                """
            )
        )
        run(
            sa.text(
                """
                INSERT INTO governance_decision_threads (proposal_id, registry_id, status,
                                                         deadline, created_at, updated_at)
                SELECT p.id, r.first + (p.id * 13 + k) % :k, 'sent', p.decision_deadline,
                       p.sent_at, p.sent_at
                FROM (SELECT *, row_number() OVER (ORDER BY id) AS n
                      FROM governance_proposals) p
                CROSS JOIN (SELECT min(id) AS first FROM registries) r
                CROSS JOIN LATERAL generate_series(
                    0, CASE p.n WHEN 1 THEN :lo WHEN 2 THEN :hi
                                ELSE :lo + (p.n * 17) % (:hi - :lo + 1) END - 1) AS k
                """
            ),
            {"k": registries, "lo": FAN_OUT_MIN, "hi": FAN_OUT_MAX},
        )
        threads = run(sa.text("SELECT count(*) FROM governance_decision_threads")).scalar()
        # Event i goes to thread i mod T: every thread is sent, then the next events decide
        # threads in turn (approved, declined, conditions set, information asked, expired).
        run(
            sa.text(
                """
                INSERT INTO governance_decision_events (proposal_id, thread_id, seq, kind,
                                                        actor_id, text, occurred_at,
                                                        prev_hash, hash)
                SELECT proposal_id, thread_id,
                       row_number() OVER (PARTITION BY proposal_id ORDER BY step, thread_id),
                       kind, NULL, text, occurred_at, repeat('0', 64),
                       encode(sha256(convert_to('bench:' || g, 'UTF8')), 'hex')
                FROM (
                    SELECT g, t.proposal_id, t.id AS thread_id, (g - 1) / :t + 1 AS step,
                           CASE WHEN (g - 1) / :t = 0 THEN 'sent'
                                WHEN (g - 1) / :t = 1 THEN
                                    (ARRAY['approved', 'declined', 'conditions_set',
                                           'info_requested', 'expired'])[1 + t.id % 5]
                                ELSE 'deadline_extended' END AS kind,
                           CASE WHEN (g - 1) / :t = 1 THEN 'Reason for thread ' || t.id END
                               AS text,
                           t.created_at + ((g - 1) / :t) * interval '1 day' AS occurred_at
                    FROM generate_series(1, :n) AS g
                    JOIN (SELECT id, proposal_id, created_at,
                                 row_number() OVER (ORDER BY id) - 1 AS i
                          FROM governance_decision_threads) t ON t.i = (g - 1) % :t
                ) e
                """
            ),
            {"n": events, "t": threads},
        )
        run(
            sa.text(
                """
                UPDATE governance_decision_threads t
                SET status = e.kind,
                    decided_at = CASE WHEN e.kind <> 'info_requested' THEN e.occurred_at END,
                    paused_since = CASE WHEN e.kind = 'info_requested' THEN e.occurred_at END,
                    conditions = CASE WHEN e.kind = 'conditions_set'
                                      THEN 'Conditions of thread ' || t.id END,
                    updated_at = e.occurred_at
                FROM governance_decision_events e
                WHERE e.thread_id = t.id
                  AND e.kind IN ('approved', 'declined', 'conditions_set', 'info_requested',
                                 'expired')
                """
            )
        )
        timings["proposals, threads, events"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    timings["vacuum analyze"] = time.perf_counter() - started
    return timings


def built_rows(engine: sa.Engine) -> dict[str, int | str]:
    """Row counts read back from the database, and how threads and enrolments spread."""
    counts: dict[str, int | str] = {}
    with engine.connect() as conn:
        for table, where in [
            ("registries", ""),
            ("users", "WHERE role = 'participant'"),
            ("consent_participants", ""),
            ("registry_enrolments", ""),
            ("consent_registry_masks", ""),
            ("governance_proposals", ""),
            ("governance_proposal_scopes", ""),
            ("governance_decision_threads", ""),
            ("governance_decision_events", ""),
        ]:
            counts[table] = conn.execute(sa.text(f"SELECT count(*) FROM {table} {where}")).scalar()
        for label, table in [
            ("threads per registry", "governance_decision_threads"),
            ("enrolments per registry", "registry_enrolments"),
        ]:
            low, mid, high = conn.execute(
                sa.text(
                    f"SELECT min(n), percentile_disc(0.5) WITHIN GROUP (ORDER BY n), max(n) "
                    f"FROM (SELECT count(*) AS n FROM {table} GROUP BY registry_id) s"
                )
            ).one()
            counts[label] = f"{low:,} / {mid:,} / {high:,} (min / median / max)"
        open_threads = conn.execute(
            sa.text(
                "SELECT count(*) FROM governance_decision_threads "
                "WHERE status IN ('sent', 'in_review', 'info_requested')"
            )
        ).scalar()
        counts["open threads"] = open_threads
    return counts


# Measuring -----------------------------------------------------------------------------------


class StatementLog:
    """Every statement the engine runs while :attr:`active` (SQL and parameters)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.active = False
        self.statements: list[tuple[str, object]] = []
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, parameters, _context, _executemany) -> None:
        if self.active:
            self.statements.append((statement, parameters))

    def run(self, fn: Callable[[], object]) -> list[tuple[str, object]]:
        """Run ``fn`` once and return the statements it ran."""
        self.statements, self.active = [], True
        try:
            fn()
        finally:
            self.active = False
        return self.statements


def timed(app, operation: Callable, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile (ms) of ``operation(session)``, each call in a fresh session
    (opening it is timed, as a page request pays for it too), after three warm-up calls."""
    samples = []
    for i in range(repeats + 3):
        start = time.perf_counter()
        session = Database.new_session(app)
        try:
            operation(session)
        finally:
            session.close()
        if i >= 3:
            samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, round(len(samples) * 0.95) - 1)]


def measure(name: str, size: dict[str, int], args) -> dict:
    """Build one data set in its own schema and measure every operation on it."""
    schema = f"engage_bench_governance_{name}"
    admin = sa.create_engine(schema_url("public"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    app = create_app(
        {"ENGAGE_CONFIG": "testing", "DATABASE_URL": schema_url(schema), "MAIL_BACKEND": "console"}
    )
    try:
        command.upgrade(alembic_config(app), "head")
        started = time.perf_counter()
        steps = build(app, **size)
        built_in = time.perf_counter() - started
        engine = Database.engine(app)
        rows = built_rows(engine)
        print(
            f"{name}: built in {built_in:.1f} s ("
            + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps.items())
            + ")",
            flush=True,
        )
        for label, value in rows.items():
            print(
                f"  {label:<28} {value:>12,}"
                if isinstance(value, int)
                else f"  {label:<28} {value}",
                flush=True,
            )
        with engine.connect() as conn:
            by_threads = list(
                conn.execute(
                    sa.text(
                        "SELECT registry_id, count(*) FROM governance_decision_threads "
                        "GROUP BY registry_id ORDER BY count(*) DESC, registry_id"
                    )
                )
            )
            first_two = list(
                conn.execute(
                    sa.text(
                        "SELECT p.id, count(t.id) FROM governance_proposals p "
                        "JOIN governance_decision_threads t ON t.proposal_id = p.id "
                        "GROUP BY p.id ORDER BY p.id LIMIT 2"
                    )
                )
            )
        busiest, quietest = by_threads[0], by_threads[-1]
        setup = Database.new_session(app)
        proposals = {pid: setup.get(Proposal, pid) for pid, _n in first_two}
        setup.expunge_all()
        setup.close()
        now = utcnow()
        operations: list[tuple[str, str, Callable, int]] = []
        for registry_id, n in (busiest, quietest):
            operations.append(
                (
                    "inbox page",
                    f"registry {registry_id} ({n} threads)",
                    # As the inbox page asks: one page of INBOX_PAGE_SIZE (+1 to know of more).
                    lambda s, r=registry_id: queries.registry_inbox(
                        s, r, now, limit=queries.INBOX_PAGE_SIZE + 1
                    ),
                    args.repeats,
                )
            )
        for kind, fn, repeats in [
            ("matrix", queries.matrix, args.repeats),
            ("cohorts_for", cohort.cohorts_for, args.cohort_repeats),
        ]:
            for pid, n in first_two:
                operations.append(
                    (
                        kind,
                        f"proposal {pid} ({n} registries)",
                        lambda s, f=fn, p=proposals[pid]: f(s, p),
                        repeats,
                    )
                )
        log = StatementLog(engine)
        results = {}
        session = Database.new_session(app)
        for kind, subject, operation, repeats in operations:
            try:
                statements = log.run(lambda op=operation: op(session))
            finally:
                session.rollback()
            median, p95 = timed(app, operation, repeats)
            results[(kind, subject)] = {
                "median": median,
                "p95": p95,
                "statements": len(statements),
                "sql": [sql for sql, _params in statements],
                "repeats": repeats,
            }
            print(
                f"  {kind:<33} {subject:<28} median {median:8.2f} ms  p95 {p95:8.2f} ms  "
                f"{len(statements):4d} statements  ({repeats} calls)",
                flush=True,
            )
            if args.explain and name == "full":
                _explain(session, statements)
        session.close()
        with Database.new_session(app) as session:
            cohorts = cohort.cohorts_for(session, proposals[first_two[1][0]])
        shown = [count.shown for count in cohorts.values()]
        print(f"  cohorts of proposal {first_two[1][0]}: {', '.join(shown[:6])}, ...", flush=True)
        return results
    except BaseException:
        traceback.print_exc()  # now, not after the schema is dropped
        raise
    finally:
        Database.engine(app).dispose()
        if not args.keep:
            with admin.begin() as conn:
                # A session left open by an error would otherwise make the drop wait forever.
                conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        else:
            print(f"  kept schema {schema}", flush=True)
        admin.dispose()


def _explain(session, statements: list[tuple[str, object]]) -> None:
    """EXPLAIN ANALYZE of each distinct statement (first parameters seen)."""
    seen = set()
    for sql, params in statements:
        if sql in seen:
            continue
        seen.add(sql)
        plan = session.connection().exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("    " + "\n    ".join(row[0] for row in plan), flush=True)
    session.rollback()


def report(full: dict, small: dict, divisor: int) -> None:
    """The full/small table and each goal, met or missed."""
    print()
    print(
        f"{'operation':<33} {'subject (full)':<28} {'stmts':>5} {'full med':>9} {'full p95':>9} "
        f"{'small med':>10} {'small p95':>10} {'ratio med':>10} {'ratio p95':>10}"
    )
    missed = []
    keys_small = list(small)
    for index, (key, big) in enumerate(full.items()):
        kind, subject = key
        little = small.get(key) or small[keys_small[index]]
        ratio_median = big["median"] / little["median"]
        ratio_p95 = big["p95"] / little["p95"]
        print(
            f"{kind:<33} {subject:<28} {big['statements']:>5} {big['median']:>9.2f} "
            f"{big['p95']:>9.2f} {little['median']:>10.2f} {little['p95']:>10.2f} "
            f"{ratio_median:>10.2f} {ratio_p95:>10.2f}"
        )
        if big["p95"] >= P95_GOAL_MS:
            missed.append(f"{kind}, {subject}: p95 {big['p95']:.1f} ms >= {P95_GOAL_MS:.0f} ms")
        if ratio_median > RATIO_GOAL:
            missed.append(
                f"{kind}, {subject}: median {ratio_median:.2f}x the 1/{divisor} data set "
                f"(> {RATIO_GOAL}x)"
            )
    by_kind: dict[str, list[tuple[str, int]]] = {}
    for (kind, subject), result in full.items():
        by_kind.setdefault(kind, []).append((subject, result["statements"]))
    print()
    for kind, counts in by_kind.items():
        numbers = {n for _subject, n in counts}
        verdict = "constant" if len(numbers) == 1 else "GROWS"
        print(
            f"statements, {kind}: "
            + "; ".join(f"{subject}: {n}" for subject, n in counts)
            + f" -> {verdict}"
        )
        if len(numbers) > 1:
            missed.append(f"{kind}: statement count grows with the number of registries")
            # Which statements repeat, to name the function that runs them.
            for subject, _n in counts[-1:]:
                sql = full[(kind, subject)]["sql"]
                for text in dict.fromkeys(sql):
                    first = " ".join(text.split())[:110]
                    print(f"    {sql.count(text):4d} x {first}")
    print()
    print(
        f"goals: p95 < {P95_GOAL_MS:.0f} ms; median <= {RATIO_GOAL}x the 1/{divisor} data set; "
        "statements constant in the number of registries"
    )
    if missed:
        print("missed:")
        for line in missed:
            print(f"  - {line}")
    else:
        print("all goals met")


def _code_version() -> str:
    """The commit, and which of the measured modules differ from it (others edit them too)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "governance", "engage/consent/queries.py"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "unknown (no git)"
    dirty = [line[3:] for line in changed if line.strip()]
    return commit + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100, help="the small set is 1/SCALE")
    parser.add_argument("--quick", action="store_true", help="1/10 and 1/1000 of the target")
    parser.add_argument("--keep", action="store_true", help="keep the schemas")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE (larger set)")
    parser.add_argument("--repeats", type=int, help="calls per inbox and matrix measure")
    parser.add_argument("--cohort-repeats", type=int, help="calls per cohort measure")
    args = parser.parse_args()
    big_divisor, small_divisor = (10, 1000) if args.quick else (1, args.scale)
    args.repeats = args.repeats or (20 if args.quick else 200)
    args.cohort_repeats = args.cohort_repeats or (5 if args.quick else 30)
    registries = TARGET["registries"]
    print(
        f"governance benchmark: full = 1/{big_divisor} of the target, small = 1/{small_divisor} "
        f"(proposals, decision events, participants; always {registries} registries, each "
        f"proposal sent to {FAN_OUT_MIN}-{FAN_OUT_MAX}){' [--quick]' if args.quick else ''}",
        flush=True,
    )
    print(f"code measured: {_code_version()}", flush=True)
    started = time.perf_counter()
    full = measure("full", sizes(big_divisor, registries), args)
    print(flush=True)
    small = measure("small", sizes(small_divisor, registries), args)
    report(full, small, small_divisor // big_divisor)
    print(
        f"\n{args.repeats} calls per inbox and matrix measure, {args.cohort_repeats} per cohort "
        "measure, each in a fresh session after 3 warm-ups; decision events are not valid hash "
        "chains and participants have masks but no consent events (nothing measured reads "
        f"them). Total run {time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
