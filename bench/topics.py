"""Benchmark of the topic pages on PostgreSQL: a large data set against a small baseline.

Large: 100,000 people, 5,000 published topics, 1,000,000 supports.
Small: 1,000 people, 50 published topics, 1,000 supports.

For each, it measures through the Flask test client (server-side time, no network) the median
and 95th percentile of: the list page (20 per page, most supported first), a topic page, and a
support + withdraw cycle by one participant; then prints the large/small ratios.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
        .venv/bin/python bench/topics.py

It works in schemas of its own (``engage_bench_topics_*``) and drops them at the end.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engage.app import create_app  # noqa: E402
from engage.db import Database  # noqa: E402
from engage.migrate import alembic_config  # noqa: E402

BASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPEATS = int(os.environ.get("BENCH_REPEATS", "200"))
SIZES = {
    "small": {"people": 1_000, "topics": 50, "supports": 1_000},
    "large": {"people": 100_000, "topics": 5_000, "supports": 1_000_000},
}
# A throwaway hash: the benchmark signs in by session, not by password.
FAKE_HASH = "$argon2id$v=19$m=8,t=1,p=1$bm90LWEtcmVhbC1zYWx0$bm90LWEtcmVhbC1oYXNo"


def schema_url(schema: str) -> str:
    url = sa.engine.make_url(BASE_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def build(engine: sa.Engine, people: int, topics: int, supports: int) -> None:
    """Fill the schema with set-based SQL (fast even for a million rows)."""
    per_person = supports // people  # each person supports this many distinct topics
    assert per_person * people == supports and per_person <= topics
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO users (email, display_name, password_hash, role, country, language,
                                   is_active, session_version, created_at, email_verified_at,
                                   clinician_verified_at)
                SELECT 'person' || g || '@bench.example', 'Person ' || g, :hash,
                       CASE WHEN g % 20 = 0 THEN 'organisation'
                            WHEN g % 10 = 0 THEN 'clinician' ELSE 'participant' END,
                       'SE', 'en', true, 1, now(), now(),
                       CASE WHEN g % 10 = 0 AND g % 20 <> 0 THEN now() END
                FROM generate_series(1, :people) AS g
                """
            ),
            {"hash": FAKE_HASH, "people": people},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO topics (title, question, rationale, category, status, reference_links,
                                    author_id, support_count, is_hidden, created_at, updated_at,
                                    published_at)
                SELECT 'Topic ' || g || ': does intervention ' || g || ' slow MS progression?',
                       'Question text of topic ' || g, 'Why topic ' || g || ' *matters*.',
                       (ARRAY['treatments','lifestyle','symptoms','progression','infections',
                              'care','other'])[1 + g % 7],
                       'published', '[]', 1 + (g % :people), 0, false,
                       now() - (g || ' minutes')::interval, now(),
                       now() - (g || ' minutes')::interval
                FROM generate_series(1, :topics) AS g
                """
            ),
            {"people": people, "topics": topics},
        )
        # Person p supports topics p, p+step, p+2*step, ... (distinct, spread over all topics).
        conn.execute(
            sa.text(
                """
                INSERT INTO topic_supports (topic_id, user_id, role, is_verified_clinician,
                                            created_at)
                SELECT 1 + ((u.id - 1 + k * :step) % :topics), u.id, u.role,
                       u.clinician_verified_at IS NOT NULL, now()
                FROM users u CROSS JOIN generate_series(0, :per_person - 1) AS k
                """
            ),
            {"step": max(1, topics // per_person), "topics": topics, "per_person": per_person},
        )
        conn.execute(
            sa.text(
                """
                UPDATE topics t SET support_count = s.n
                FROM (SELECT topic_id, count(*) AS n FROM topic_supports GROUP BY topic_id) s
                WHERE s.topic_id = t.id
                """
            )
        )
        conn.execute(sa.text("ANALYZE"))


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds, of ``repeats`` calls after a warm-up."""
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def measure(name: str, size: dict[str, int]) -> dict[str, tuple[float, float]]:
    schema = f"engage_bench_topics_{name}"
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
        build(Database.engine(app), **size)
        print(
            f"{name}: {size['people']:,} people, {size['topics']:,} topics, "
            f"{size['supports']:,} supports built in {time.perf_counter() - started:.1f} s"
        )
        client = app.test_client()
        # Sign in as a participant through the session (no password hashing in the loop).
        with client.session_transaction() as cookie:
            cookie["_user_id"] = "2:1"
            cookie["_fresh"] = True
        busiest = (
            Database.engine(app)
            .connect()
            .execute(sa.text("SELECT id FROM topics ORDER BY support_count DESC, id LIMIT 1"))
            .scalar()
        )
        # A topic the participant does not support yet.
        free_topic = (
            Database.engine(app)
            .connect()
            .execute(
                sa.text(
                    "SELECT id FROM topics WHERE id NOT IN "
                    "(SELECT topic_id FROM topic_supports WHERE user_id = 2) ORDER BY id LIMIT 1"
                )
            )
            .scalar()
        )

        def list_page():
            assert client.get("/topics").status_code == 200

        def topic_page():
            assert client.get(f"/topics/{busiest}").status_code == 200

        def support_cycle():
            assert client.post(f"/topics/{free_topic}/support").status_code == 303
            assert client.post(f"/topics/{free_topic}/support/withdraw").status_code == 303

        return {
            "list page": timed(list_page, REPEATS),
            "topic page": timed(topic_page, REPEATS),
            "support+withdraw": timed(support_cycle, REPEATS // 2),
        }
    finally:
        Database.engine(app).dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    results = {name: measure(name, size) for name, size in SIZES.items()}
    print()
    print(
        f"{'measure':<18} {'small median':>13} {'small p95':>10} {'large median':>13} "
        f"{'large p95':>10} {'ratio (median)':>15} {'ratio (p95)':>12}"
    )
    for key in results["small"]:
        s_med, s_p95 = results["small"][key]
        l_med, l_p95 = results["large"][key]
        print(
            f"{key:<18} {s_med:>11.2f}ms {s_p95:>8.2f}ms {l_med:>11.2f}ms {l_p95:>8.2f}ms "
            f"{l_med / s_med:>15.2f} {l_p95 / s_p95:>12.2f}"
        )
    print(
        f"\n{REPEATS} requests per page measure, {REPEATS // 2} support cycles; "
        "times are server-side through the Flask test client."
    )


if __name__ == "__main__":
    main()
