"""Benchmark of closing a priority-setting round and of its results page, on PostgreSQL.

Data: one round with 80 shortlisted topics and 100,000 ballots of 10 ranks each, in the three
default groups of unequal size (70,000 people with MS, 22,000 healthcare professionals, 8,000
MS organisations). Each group has its own favourite topics, and each ballot ranks 10 distinct
topics drawn around its group's favourites (so group rankings differ and ties are rare).

It measures:

- the closing, broken down: reading the ballots (``closing.counted_ballots``), the tally
  (``tally.tally``), building the ballot file (median of 3 each, rolled back); then the real
  closing once (``closing.close_round`` + commit: lock, read, tally, store the result and the
  ballot file, audit), with its SQL statement count;
- recomputing from the published file as ``engage rounds tally`` does (parse the JSON, check it
  strictly, recount);
- the results page ``/rounds/<id>/results`` through the Flask test client (server-side time, no
  network): median and 95th percentile of BENCH_REPEATS requests, SQL statements per request;
  and, beside it, what reading only the stored result costs (one column, ``from_json``);
- the ballot file download ``/rounds/<id>/ballots.json`` (a few requests).

Timings are printed, never asserted (goals: closing tally < 2 s, results page p95 < 50 ms).

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/rounds.py

It works in a schema of its own (``engage_bench_rounds``) and drops it at the end. Ballots are
loaded with COPY, without their hash-chain events: nothing measured reads the events.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engage.app import create_app  # noqa: E402
from engage.db import Database  # noqa: E402
from engage.migrate import alembic_config  # noqa: E402
from engage.rounds import closing, tally  # noqa: E402
from engage.rounds.models import PriorityRound  # noqa: E402
from engage.rounds.rules import DEFAULT_GROUPS  # noqa: E402
from engage.timeutil import utcnow  # noqa: E402

BASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPEATS = int(os.environ.get("BENCH_REPEATS", "200"))
SCHEMA = "engage_bench_rounds"
TOPICS = 80
RANKS = 10
# Ballots per group, in the round's group order (unequal on purpose).
GROUP_BALLOTS = {"people_with_ms": 70_000, "professionals": 22_000, "organisations": 8_000}
ROLES = {
    "people_with_ms": "participant",
    "professionals": "clinician",
    "organisations": "organisation",
}
FAKE_HASH = "$argon2id$v=19$m=8,t=1,p=1$bm90LWEtcmVhbC1zYWx0$bm90LWEtcmVhbC1oYXNo"


def schema_url(schema: str) -> str:
    url = sa.engine.make_url(BASE_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def rankings(rng: random.Random, topics: list[int], count: int) -> list[list[int]]:
    """``count`` rankings of RANKS distinct topics, drawn around a preference order of the
    group's own: the topic at preference index i is drawn with weight falling off with i."""
    preference = topics[:]
    rng.shuffle(preference)
    drawn = []
    for _ in range(count):
        chosen: dict[int, None] = {}
        while len(chosen) < RANKS:
            chosen[preference[int(rng.expovariate(1 / 15)) % len(preference)]] = None
        drawn.append(list(chosen))
    return drawn


def build(engine: sa.Engine) -> int:
    """People, topics, the round, its shortlist and its ballots; returns the round's id."""
    people = sum(GROUP_BALLOTS.values())
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO users (email, display_name, password_hash, role, country, language,
                                   is_active, session_version, created_at, email_verified_at,
                                   clinician_verified_at)
                SELECT 'person' || g || '@bench.example', 'Person ' || g, :hash,
                       CASE WHEN g <= :pwms THEN 'participant'
                            WHEN g <= :pwms + :pros THEN 'clinician' ELSE 'organisation' END,
                       'SE', 'en', true, 1, now(), now(), now()
                FROM generate_series(1, :people) AS g
                """
            ),
            {
                "hash": FAKE_HASH,
                "people": people,
                "pwms": GROUP_BALLOTS["people_with_ms"],
                "pros": GROUP_BALLOTS["professionals"],
            },
        )
        topic_ids = list(
            conn.execute(
                sa.text(
                    """
                    INSERT INTO topics (title, question, rationale, category, status,
                                        reference_links, author_id, support_count, is_hidden,
                                        created_at, updated_at, published_at)
                    SELECT 'Topic ' || g || ': does treatment ' || g || ' slow MS progression?',
                           'Question text of topic ' || g, 'Why topic ' || g || ' matters.',
                           'treatments', 'shortlisted', '[]',
                           (SELECT min(id) FROM users), 0, false, now(), now(), now()
                    FROM generate_series(1, :topics) AS g
                    RETURNING id
                    """
                ),
                {"topics": TOPICS},
            ).scalars()
        )
        round_id = conn.execute(
            sa.insert(PriorityRound)
            .values(
                title="Treatment priorities",
                question="Which unanswered questions about MS treatment matter most to you?",
                max_ranks=RANKS,
                groups=DEFAULT_GROUPS,
                opens_at=now - timedelta(days=60),
                closes_at=now - timedelta(minutes=1),
                created_at=now - timedelta(days=61),
                workshop_note="",
            )
            .returning(PriorityRound.id)
        ).scalar_one()
        conn.execute(
            sa.text(
                """
                INSERT INTO round_shortlist_items (round_id, topic_id, evidence_status,
                                                   evidence_note, evidence_url, added_at)
                SELECT :round, id, CASE WHEN id % 3 = 0 THEN 'partly_answered'
                                        ELSE 'unanswered' END, '', '', now()
                FROM topics ORDER BY id
                """
            ),
            {"round": round_id},
        )
        people_by_role = {
            role: list(
                conn.execute(
                    sa.text("SELECT id FROM users WHERE role = :role ORDER BY id"), {"role": role}
                ).scalars()
            )
            for role in ROLES.values()
        }
    rng = random.Random(2026)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(
            "COPY round_ballots (round_id, user_id, ballot_uid, group_code, ranking, version, "
            "cast_at, updated_at) FROM STDIN"
        ) as copy:
            for code, count in GROUP_BALLOTS.items():
                voters = people_by_role[ROLES[code]]
                for user_id, ranking in zip(voters, rankings(rng, topic_ids, count), strict=True):
                    uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                    copy.write_row((round_id, user_id, uid, code, json.dumps(ranking), 1, now, now))
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    return round_id


class StatementCounter:
    """Counts the SQL statements the engine runs while ``counting`` is on."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        self.count += 1

    def measure(self, fn: Callable[[], object]) -> int:
        before = self.count
        fn()
        return self.count - before


def median_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def timed_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds, of ``repeats`` calls after a warm-up."""
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    admin = sa.create_engine(schema_url("public"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        conn.execute(sa.text(f'CREATE SCHEMA "{SCHEMA}"'))
    app = create_app(
        {"ENGAGE_CONFIG": "testing", "DATABASE_URL": schema_url(SCHEMA), "MAIL_BACKEND": "console"}
    )
    try:
        command.upgrade(alembic_config(app), "head")
        engine = Database.engine(app)
        started = time.perf_counter()
        round_id = build(engine)
        total = sum(GROUP_BALLOTS.values())
        print(
            f"{total:,} ballots of {RANKS} ranks over {TOPICS} topics in 3 groups "
            f"({', '.join(f'{c} {n:,}' for c, n in GROUP_BALLOTS.items())}) "
            f"built in {time.perf_counter() - started:.1f} s"
        )
        statements = StatementCounter(engine)

        # The closing, part by part (rolled back), then for real.
        session = Database.new_session(app)
        round_ = session.get(PriorityRound, round_id)
        shortlist = closing.shortlist_ids(session, round_id)
        ballots: list[tally.CountedBallot] = []

        def read() -> None:
            nonlocal ballots
            ballots = closing.counted_ballots(session, round_id)

        def count() -> tally.RoundResult:
            return tally.tally(
                max_ranks=round_.max_ranks,
                groups=round_.groups,
                shortlist=shortlist,
                ballots=ballots,
            )

        read_s = median_seconds(read)
        tally_s = median_seconds(count)
        result = count()
        file_s = median_seconds(
            lambda: tally.ballot_file(
                round_id=round_id,
                title=round_.title,
                max_ranks=round_.max_ranks,
                groups=round_.groups,
                shortlist=shortlist,
                ballots=ballots,
                result=result,
            )
        )
        session.rollback()
        session.close()

        session = Database.new_session(app)
        before = statements.count
        started = time.perf_counter()
        assert closing.close_round(session, round_id, utcnow())
        session.commit()
        close_s = time.perf_counter() - started
        close_statements = statements.count - before
        session.close()

        # What ``engage rounds tally`` does with the published file.
        with engine.connect() as conn:
            published = conn.execute(
                sa.text("SELECT ballot_file::text FROM priority_rounds WHERE id = :id"),
                {"id": round_id},
            ).scalar_one()
        file_bytes = len(published.encode())
        recount_s = median_seconds(lambda: tally.read_ballot_file(json.loads(published)).recount())
        stored = tally.RoundResult.from_json(json.loads(published)["result"])

        client = app.test_client()
        results_url = f"/rounds/{round_id}/results"
        assert client.get(results_url).status_code == 200

        def results_page() -> None:
            assert client.get(results_url).status_code == 200

        page_statements = statements.measure(results_page)
        page_med, page_p95 = timed_ms(results_page, REPEATS)

        def stored_result_only() -> None:
            with engine.connect() as conn:
                data = conn.execute(
                    sa.select(PriorityRound.result).where(PriorityRound.id == round_id)
                ).scalar_one()
            tally.RoundResult.from_json(data)

        result_med, result_p95 = timed_ms(stored_result_only, REPEATS)

        def download() -> None:
            assert client.get(f"/rounds/{round_id}/ballots.json").status_code == 200

        download_med, download_p95 = timed_ms(download, 20)
    finally:
        Database.engine(app).dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        admin.dispose()

    print()
    print("Closing the round")
    print(f"  read the ballots (counted_ballots)   {read_s * 1000:9.0f} ms  (median of 3)")
    print(f"  tally                                {tally_s * 1000:9.0f} ms  (median of 3)")
    print(f"  build the ballot file                {file_s * 1000:9.0f} ms  (median of 3)")
    print(
        f"  close_round + commit, once           {close_s * 1000:9.0f} ms  "
        f"({close_statements} SQL statements)"
    )
    print(f"  published ballot file                {file_bytes / 1e6:9.1f} MB of JSON")
    print(
        f"  engage rounds tally's work           {recount_s * 1000:9.0f} ms  "
        "(parse + strict check + recount, median of 3)"
    )
    top = ", ".join(f"{c.topic_id} ({c.score})" for c in stored.top()[:5])
    print(f"  combined top 5: {top}")
    print()
    print(f"Results page ({REPEATS} requests, server-side through the Flask test client)")
    print(
        f"  GET {results_url:<22}        median {page_med:7.2f} ms  p95 {page_p95:7.2f} ms  "
        f"({page_statements} SQL statements per request)"
    )
    print(
        f"  stored result only (1 column + from_json) median {result_med:7.2f} ms  "
        f"p95 {result_p95:7.2f} ms"
    )
    print(
        f"  GET /rounds/{round_id}/ballots.json (20)       median {download_med:7.2f} ms  "
        f"p95 {download_p95:7.2f} ms"
    )


if __name__ == "__main__":
    main()
