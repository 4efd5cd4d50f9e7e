"""Benchmark of newsletter delivery on PostgreSQL: one campaign to 1,000,000 subscribers of one
list, through the real ``sendgrid`` client to the local fake SendGrid server.

What it does and prints:

1. builds the data set in a schema of its own (``engage_bench_delivery_*``): N confirmed
   subscribers (default 1,000,000) on one list, and a campaign due now; prints the rows read
   back and how long building took;
2. starts the fake SendGrid server in a process of its own (``python -m tests.fake_sendgrid``,
   keeping only the delivery ids it accepted, not the bodies);
3. **"send"**: ``--workers`` delivery worker processes (default 2, the machine's cores) are
   started first, as a deployment's are; the clock starts when the scheduler's job starts the
   campaign (writing the audience, one delivery row per recipient, in committed chunks that the
   workers start on at once) and stops when the last batch was accepted (the send finished). Prints
   recipients per second, the number of HTTP requests the fake server received, how many
   distinct recipients it accepted and how many more than once, the peak resident memory of
   each worker and of the process that started the send (``ru_maxrss``);
4. **naive loop**: on a sample of 5,000 (``--sample``) recipients of a second campaign, one
   request per recipient with the same guarantees, one recipient at a time (claim and commit,
   ``engage.mail.send`` of the personalised message through the same client and server,
   record and commit): its recipients per second and the ratio between the two.

Then the issue's goals (1,000,000 recipients in under 60 s, peak memory under 300 MB, at least
100x the naive loop), each printed as met or missed; the benchmark never fails on a time.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/delivery.py [--recipients 1000000] [--workers 2] [--quick] [--keep]

``--quick`` sends to 20,000 recipients and samples 1,000 for a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic import command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engage.app import create_app  # noqa: E402
from engage.db import Database  # noqa: E402
from engage.migrate import alembic_config  # noqa: E402
from engage.timeutil import utcnow  # noqa: E402

BASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BODY = (
    "Dear {name},\n\nThis season the network **adopted three research topics** you supported "
    "and started two projects with the registries. Read what happens next on "
    "[the topics page](https://engage.example/topics).\n\n- Fatigue and work\n- Exercise and "
    "cognition\n- Sleep\n\nThank you for taking part."
)


def schema_url(schema: str) -> str:
    url = sa.engine.make_url(BASE_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def peak_mb() -> float:
    """This process's peak resident memory in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_app(url: str, fake_url: str | None = None):
    config = {
        "ENGAGE_CONFIG": "testing",
        "DATABASE_URL": url,
        "BASE_URL": "https://engage.example",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "NEWSLETTER_BATCH_SIZE": 1000,
    }
    if fake_url:
        config.update(
            MAIL_BACKEND="sendgrid",
            SENDGRID_API_KEY="SG.bench-key",
            SENDGRID_API_HOST=fake_url,
            SENDGRID_TIMEOUT=30,
        )
    return create_app(config)


def build(app, recipients: int, sample: int) -> dict[str, int]:
    """Two lists (the big one and the naive loop's sample), their subscribers, two campaigns."""
    engine = Database.engine(app)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            sa.text(
                """
                INSERT INTO newsletter_lists (name, description, visibility, is_archived,
                                              created_at, updated_at)
                VALUES ('Research updates', '', 'public', false, now(), now()),
                       ('Naive sample', '', 'public', false, now(), now())
                """
            )
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO newsletter_subscribers (email, name, language, created_at)
                SELECT 'reader' || g || '@bench.example', 'Reader ' || g, 'en', now()
                FROM generate_series(1, :n) AS g
                """
            ),
            {"n": recipients},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO newsletter_subscriptions (subscriber_id, list_id, status, source,
                                                      created_at, confirmed_at)
                SELECT s.id, l.id, 'confirmed', 'signup', now(), now()
                FROM newsletter_subscribers s
                JOIN newsletter_lists l ON l.name = 'Research updates'
                """
            )
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO newsletter_subscriptions (subscriber_id, list_id, status, source,
                                                      created_at, confirmed_at)
                SELECT s.id, l.id, 'confirmed', 'signup', now(), now()
                FROM (SELECT id FROM newsletter_subscribers ORDER BY id LIMIT :k) s
                JOIN newsletter_lists l ON l.name = 'Naive sample'
                """
            ),
            {"k": sample},
        )
        for name in ("Research updates", "Naive sample"):
            conn.execute(
                sa.text(
                    """
                    INSERT INTO newsletter_campaigns (kind, subject, preheader, body_markdown,
                        status, audience, timezone, send_at, next_run_at, created_at, updated_at)
                    VALUES ('progress_report', :subject, 'What the network did this season',
                        :body, 'draft', '{}', 'UTC', now(), NULL, now(), now())
                    """
                ),
                {"subject": f"Progress report ({name})", "body": BODY},
            )
            conn.execute(
                sa.text(
                    """
                    INSERT INTO newsletter_campaign_lists (campaign_id, list_id)
                    SELECT c.id, l.id FROM newsletter_campaigns c, newsletter_lists l
                    WHERE c.subject = :subject AND l.name = :name
                    """
                ),
                {"subject": f"Progress report ({name})", "name": name},
            )
        conn.execute(sa.text("ANALYZE"))
    with engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("newsletter_subscribers", "newsletter_subscriptions")
        }


def schedule(app, subject_like: str) -> int:
    """Make the campaign due now; returns its id."""
    from newsletters.models import Campaign, CampaignStatus

    with app.app_context():
        session = Database.new_session(app)
        campaign = session.scalar(sa.select(Campaign).where(Campaign.subject.like(subject_like)))
        campaign.status = CampaignStatus.SCHEDULED
        campaign.next_run_at = utcnow() - timedelta(seconds=1)
        session.commit()
        campaign_id = campaign.id
        session.close()
    return campaign_id


def start_send(app) -> tuple[int, int]:
    """Run the start job (freezes the audience); returns (send id, audience size)."""
    from newsletters import sending
    from newsletters.models import Send

    with app.app_context():
        session = Database.new_session(app)
        sending.start_due(session, utcnow(), dict(app.config))
        session.commit()
        send = session.scalars(sa.select(Send).order_by(Send.id.desc())).first()
        result = (send.id, send.audience_size)
        session.close()
    return result


def worker(url: str, fake_url: str, ready, go, queue) -> None:
    """One delivery worker process, started (app built, connections open) before the send as
    a deployment's workers are: it delivers whatever is due, again and again, until the send
    is finished; then reports counts and memory."""
    from newsletters import delivery
    from newsletters.models import Send, SendStatus

    app = make_app(url, fake_url)
    with app.app_context():
        Database.engine(app).connect().close()
    ready.put(os.getpid())
    go.wait()
    started = time.perf_counter()
    total = delivery.DeliveryReport()
    while True:
        report = delivery.deliver(app, settle=False)
        for name in ("batches", "requests", "accepted", "retrying", "failed", "unknown"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        with app.app_context():
            session = Database.new_session(app)
            send = session.scalars(sa.select(Send).order_by(Send.id.desc())).first()
            finished = send is not None and send.status == SendStatus.SENT
            session.close()
        if finished:
            break
        if not report.batches:
            time.sleep(0.02)  # nothing due yet: the audience is still being written
    queue.put(
        {
            "pid": os.getpid(),
            "seconds": time.perf_counter() - started,
            "batches": total.batches,
            "requests": total.requests,
            "accepted": total.accepted,
            "retrying": total.retrying,
            "failed": total.failed,
            "unknown": total.unknown,
            "peak_mb": peak_mb(),
        }
    )


def fake_get(fake_url: str, what: str) -> dict:
    """Ask the fake server process (``stats`` or ``accepted``)."""
    with urllib.request.urlopen(f"{fake_url}/__fake__/{what}", timeout=60) as response:  # noqa: S310
        return json.loads(response.read())


def fake_stats(fake_url: str) -> dict:
    """Mail sends received, and accepted recipients: in all and distinct delivery ids."""
    stats = fake_get(fake_url, "stats")
    accepted = fake_get(fake_url, "accepted")["delivery_ids"]
    stats["accepted_total"] = len(accepted)
    stats["accepted_distinct"] = len(set(accepted))
    return stats


def start_fake() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_sendgrid", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    port = int(line.split()[-1])
    return process, f"http://127.0.0.1:{port}"


def naive_loop(app, sample_campaign_subject: str) -> tuple[int, float]:
    """One request per recipient of the sample campaign's frozen audience, with the same
    guarantees as the batched path, one recipient at a time (as the core outbox delivers each
    email): claim and commit, send the personalised message through the same client, record
    the answer and commit."""
    from engage import mail
    from newsletters import content
    from newsletters.models import Delivery, DeliveryStatus, Send
    from newsletters.tokens import UnsubscribeSigner

    schedule(app, sample_campaign_subject)
    send_id, size = start_send(app)
    with app.app_context():
        session = Database.new_session(app)
        send = session.get(Send, send_id)
        rendered = content.render_newsletter(
            subject=send.subject,
            preheader=send.preheader,
            body_markdown=send.body_markdown,
            kind_label="Progress report",
            archive_url=None,
        )
        rows = session.execute(
            sa.select(
                Delivery.id, Delivery.subscriber_id, Delivery.list_id, Delivery.email, Delivery.name
            )
            .where(Delivery.send_id == send_id)
            .order_by(Delivery.id)
        ).all()
        session.commit()
        signer = UnsubscribeSigner(app.config["SECRET_KEY"])
        started = time.perf_counter()
        for row in rows:
            session.execute(
                sa.update(Delivery)
                .where(Delivery.id == row.id, Delivery.status == DeliveryStatus.PENDING)
                .values(status=DeliveryStatus.CLAIMED, claim_token="naive", claimed_at=utcnow())
            )
            session.commit()
            message = content.personalise(
                rendered,
                to=row.email,
                name=row.name,
                base_url=app.config["BASE_URL"],
                token=signer.make(row.subscriber_id, row.list_id),
            )
            message.custom_args = {"delivery_id": str(row.id), "send_id": str(send_id)}
            result = mail.send(message)
            session.execute(
                sa.update(Delivery)
                .where(Delivery.id == row.id, Delivery.claim_token == "naive")
                .values(
                    status=DeliveryStatus.ACCEPTED,
                    claim_token=None,
                    accepted_at=utcnow(),
                    provider_message_id=result.message_id,
                )
            )
            session.commit()
        seconds = time.perf_counter() - started
        session.close()
    return len(rows), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.recipients, args.sample = 20_000, 1000
    schema = f"engage_bench_delivery_{os.getpid()}"
    admin = sa.create_engine(BASE_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = schema_url(schema)
    fake, fake_url = start_fake()
    try:
        app = make_app(url, fake_url)
        command.upgrade(alembic_config(app), "head")
        with app.app_context():
            session = Database.new_session(app)
            session.execute(sa.text("DELETE FROM newsletter_lists"))  # the migration's seed
            session.commit()
            session.close()
        started = time.perf_counter()
        built = build(app, args.recipients, args.sample)
        print(f"data set: {built} built in {time.perf_counter() - started:.1f} s")

        schedule(app, "Progress report (Research updates)")
        context = multiprocessing.get_context("spawn")
        ready, go, queue = context.Queue(), context.Event(), context.Queue()
        processes = [
            context.Process(target=worker, args=(url, fake_url, ready, go, queue))
            for _ in range(args.workers)
        ]
        for process in processes:
            process.start()
        for _ in processes:
            ready.get()
        # "send": the scheduler's start job writes the audience in committed chunks; the
        # workers, already running, start on the first chunk.
        began = time.perf_counter()
        go.set()
        send_id, size = start_send(app)
        frozen = time.perf_counter() - began
        reports = [queue.get() for _ in processes]
        for process in processes:
            process.join()
        elapsed = time.perf_counter() - began
        starter_peak = peak_mb()  # before reading the fake server's million accepted ids
        stats = fake_stats(fake_url)
        rate = size / elapsed
        sender_peak = max([starter_peak, *[r["peak_mb"] for r in reports]])
        print(
            f"send: {size:,} recipients (audience written in {frozen:.1f} s, while delivery "
            f"began) delivered by "
            f"{args.workers} worker(s) in {elapsed:.1f} s: {rate:,.0f} recipients/s"
        )
        print(
            f"  HTTP requests received by the fake server: {stats['mail_sends']:,}; recipients "
            f"accepted: {stats['accepted_distinct']:,} distinct, "
            f"{stats['accepted_total'] - stats['accepted_distinct']:,} more than once"
        )
        for report in reports:
            print(
                f"  worker {report['pid']}: {report['batches']} batches, {report['requests']} "
                f"requests, {report['accepted']:,} accepted, {report['retrying']} retrying, "
                f"{report['failed']} failed, {report['unknown']} unknown in "
                f"{report['seconds']:.1f} s; peak memory {report['peak_mb']:.0f} MB"
            )
        print(f"  peak memory of the process that started the send: {starter_peak:.0f} MB")

        before = fake_stats(fake_url)["mail_sends"]
        count, seconds = naive_loop(app, "Progress report (Naive sample)")
        naive_requests = fake_stats(fake_url)["mail_sends"] - before
        naive_rate = count / seconds
        print(
            f"naive loop: {count:,} recipients, {naive_requests:,} requests in {seconds:.1f} s: "
            f"{naive_rate:,.0f} recipients/s"
        )
        ratio = rate / naive_rate
        print(f"ratio (batched / naive): {ratio:,.0f}x")
        print("goals:")
        per_million = 1_000_000 / rate
        print(
            f"  1,000,000 recipients in under 60 s: {'met' if per_million < 60 else 'missed'} "
            f"({per_million:.1f} s at the measured rate"
            f"{'' if size >= 1_000_000 else f'; measured on {size:,}'})"
        )
        print(
            f"  peak memory under 300 MB: {'met' if sender_peak < 300 else 'missed'} "
            f"({sender_peak:.0f} MB)"
        )
        print(
            f"  at least 100x the naive loop: {'met' if ratio >= 100 else 'missed'} ({ratio:,.0f}x)"
        )
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        if not args.keep:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
