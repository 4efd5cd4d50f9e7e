"""Configuration classes for Engage, read from the environment.

``ENGAGE_CONFIG`` selects one of ``development`` (default), ``testing`` or ``production``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import re
from collections.abc import Callable

DEFAULT_SECRET_KEY = "dev-only-not-secret"  # noqa: S105 - refused in production


def _env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" mean true)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_float(name: str, default: float) -> float:
    """A decimal number from the environment (the default when unset or empty)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, not {value!r}") from exc


def _env_int(name: str, default: int) -> int:
    """Read an integer environment variable, falling back to ``default``."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _is_day_list(value: str) -> bool:
    """Whether ``value`` lists whole numbers of days above 0, comma-separated (empty: none)."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    return all(part.isdigit() and int(part) > 0 for part in parts)


def _derived_receipt_key(secret_key: str) -> str:
    """A consent-receipt key derived from ``SECRET_KEY``, for development and tests only.

    Production must set its own ``CONSENT_RECEIPT_KEY``: receipts stay verifiable for years,
    so their key must not change when the session secret is rotated (and must not be guessable
    from a development default).
    """
    return hmac.new(secret_key.encode(), b"engage consent receipts", hashlib.sha256).hexdigest()


def _derived_encryption_key(secret_key: str) -> str:
    """A Fernet key derived from ``SECRET_KEY``, for development and tests only."""
    digest = hmac.new(secret_key.encode(), b"engage encryption at rest", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


class ConfigurationError(RuntimeError):
    """The configuration is unsafe or incomplete for the selected environment."""


class Config:
    """Settings shared by every environment; each reads the environment once at creation."""

    ENV_NAME = "base"

    def __init__(self) -> None:
        self.SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
        # None means "SQLite file in the instance folder", resolved by the app factory.
        self.DATABASE_URL = os.environ.get("DATABASE_URL") or None
        self.MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "file")
        self.MAIL_FROM = os.environ.get("MAIL_FROM", "Engage <no-reply@engage.localhost>")
        self.MAIL_OUTBOX_DIR = os.environ.get("MAIL_OUTBOX_DIR") or None
        # Where people write to the coordination centre for help (shown on the help and privacy
        # pages); a mailbox someone reads, unlike MAIL_FROM.
        self.SUPPORT_EMAIL = os.environ.get("SUPPORT_EMAIL", "support@engage.localhost")
        self.SENDGRID_API_KEY = os.environ.get("SENDGRID_API_KEY") or None
        self.SENDGRID_API_HOST = os.environ.get("SENDGRID_API_HOST") or None
        # Seconds to wait for SendGrid's answer; no answer in time makes the outcome unknown.
        self.SENDGRID_TIMEOUT = _env_int("SENDGRID_TIMEOUT", 10)
        self.SENDGRID_WEBHOOK_PUBLIC_KEY = os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None
        self.RATELIMIT_ENABLED = _env_bool("RATELIMIT_ENABLED", True)
        self.RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
        self.BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:5000")
        self.SCHEDULER_IN_PROCESS = _env_bool("SCHEDULER_IN_PROCESS", False)
        # How long a delivery worker's claim on an email lasts; after it the email's outcome
        # counts as unknown (longer than any one hand-over can take).
        self.OUTBOX_LEASE_SECONDS = _env_int("OUTBOX_LEASE_SECONDS", 300)
        # How many emails a delivery worker claims at a time.
        self.OUTBOX_CLAIM_BATCH = _env_int("OUTBOX_CLAIM_BATCH", 50)
        # Newsletters: recipients per Mail Send request (SendGrid takes at most 1,000), how long a
        # worker's claim on a batch lasts, and the first retry delay after 429/5xx (doubling,
        # with jitter, never sooner than the provider's rate-limit reset).
        self.NEWSLETTER_BATCH_SIZE = _env_int("NEWSLETTER_BATCH_SIZE", 1000)
        self.NEWSLETTER_LEASE_SECONDS = _env_int("NEWSLETTER_LEASE_SECONDS", 300)
        self.NEWSLETTER_RETRY_BASE_SECONDS = _env_int("NEWSLETTER_RETRY_BASE_SECONDS", 30)
        # A send's audience is written in committed chunks of this many subscriber ids, so
        # delivery starts on the first while the rest is written.
        self.NEWSLETTER_FREEZE_CHUNK_IDS = _env_int("NEWSLETTER_FREEZE_CHUNK_IDS", 100_000)
        # The mailbox of the List-Unsubscribe mailto link (None: https link only).
        self.NEWSLETTER_UNSUBSCRIBE_MAILTO = os.environ.get("NEWSLETTER_UNSUBSCRIBE_MAILTO") or None
        # Hours an email may stay "outcome unknown" without any provider event before staff may
        # settle it (send again, or count as sent); SendGrid retries its events for 24 hours.
        self.NEWSLETTER_UNKNOWN_AFTER_HOURS = _env_int("NEWSLETTER_UNKNOWN_AFTER_HOURS", 24)
        # Circuit breaker: a sending campaign pauses when, after this many accepted messages,
        # more than these shares bounced or were reported as spam.
        self.NEWSLETTER_BREAKER_MIN_ACCEPTED = _env_int("NEWSLETTER_BREAKER_MIN_ACCEPTED", 200)
        self.NEWSLETTER_BREAKER_BOUNCE_RATE = _env_float("NEWSLETTER_BREAKER_BOUNCE_RATE", 0.05)
        self.NEWSLETTER_BREAKER_SPAM_RATE = _env_float("NEWSLETTER_BREAKER_SPAM_RATE", 0.003)
        # SendGrid event webhook posts older or newer than this are refused (replays).
        self.NEWSLETTER_WEBHOOK_MAX_AGE_SECONDS = _env_int(
            "NEWSLETTER_WEBHOOK_MAX_AGE_SECONDS", 600
        )

        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = False
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_SECURE = False
        self.REMEMBER_COOKIE_DURATION = 60 * 60 * 24 * 30  # seconds
        self.MAX_CONTENT_LENGTH = 1024 * 1024  # form posts only; no uploads
        self.WTF_CSRF_ENABLED = True
        self.WTF_CSRF_TIME_LIMIT = 60 * 60 * 8

        # Lifetimes of emailed links, in seconds.
        self.EMAIL_VERIFICATION_MAX_AGE = _env_int("EMAIL_VERIFICATION_MAX_AGE", 60 * 60 * 48)
        self.PASSWORD_RESET_MAX_AGE = _env_int("PASSWORD_RESET_MAX_AGE", 60 * 60)
        # A link confirming a new email address (sent to that address).
        self.EMAIL_CHANGE_MAX_AGE = _env_int("EMAIL_CHANGE_MAX_AGE", 60 * 60 * 24)
        # Unverified sign-ups older than this many days are removed by a scheduled job.
        self.UNVERIFIED_ACCOUNT_RETENTION_DAYS = _env_int("UNVERIFIED_ACCOUNT_RETENTION_DAYS", 30)
        # argon2id cost parameters (RFC 9106 second recommended option by default).
        self.PASSWORD_HASH_TIME_COST = 3
        self.PASSWORD_HASH_MEMORY_COST = 64 * 1024  # KiB
        self.PASSWORD_HASH_PARALLELISM = 4

        # Topics: pending topics per author, reports that hide an item, comment edit window.
        self.TOPICS_MAX_PENDING = _env_int("TOPICS_MAX_PENDING", 3)
        self.TOPICS_REPORT_HIDE_THRESHOLD = _env_int("TOPICS_REPORT_HIDE_THRESHOLD", 3)
        self.TOPICS_COMMENT_EDIT_MINUTES = _env_int("TOPICS_COMMENT_EDIT_MINUTES", 15)
        self.TOPICS_CREATE_RATE_LIMIT = "5 per hour;20 per day"

        # Consent: the key that signs receipts (HMAC-SHA256), the reading level above which
        # publishing a form needs a justification, review reminders, and what receipts name.
        self.CONSENT_RECEIPT_KEY = os.environ.get("CONSENT_RECEIPT_KEY") or None
        # Encryption at rest of sensitive free-text fields: comma-separated Fernet keys, the
        # first encrypting, all decrypting (see engage/crypto.py and `engage keys rotate`).
        self.ENCRYPTION_KEYS = os.environ.get("ENCRYPTION_KEYS") or None
        self.CONSENT_MAX_READING_GRADE = _env_int("CONSENT_MAX_READING_GRADE", 8)
        self.CONSENT_REVIEW_REMINDER_DAYS = _env_int("CONSENT_REVIEW_REMINDER_DAYS", 14)
        self.CONSENT_MAX_REMINDERS = _env_int("CONSENT_MAX_REMINDERS", 3)
        self.CONSENT_JURISDICTION = os.environ.get("CONSENT_JURISDICTION", "EU")
        self.CONSENT_CONTROLLER = os.environ.get(
            "CONSENT_CONTROLLER", "MS research network coordination centre"
        )

        # Governance: how many days before a registry's deadline its custodians are reminded
        # (comma-separated, e.g. "7,1": a week before and the day before).
        self.GOVERNANCE_REMINDER_DAYS = os.environ.get("GOVERNANCE_REMINDER_DAYS", "7,1")
        # Limits of the registries' JSON API, per token and per address (flask-limiter syntax).
        self.GOVERNANCE_API_TOKEN_RATE_LIMIT = os.environ.get(
            "GOVERNANCE_API_TOKEN_RATE_LIMIT", "120 per minute"
        )
        self.GOVERNANCE_API_ADDRESS_RATE_LIMIT = os.environ.get(
            "GOVERNANCE_API_ADDRESS_RATE_LIMIT", "300 per minute"
        )

        # Sign-in limits (flask-limiter syntax), counting failed attempts only: per client
        # address (the proxy's client address when TRUSTED_PROXY_COUNT > 0), and per account
        # (a keyed hash of the address typed, known or not), so one network's many people are
        # not locked out together and a guessed account is paused wherever the guesses come from.
        self.SIGN_IN_RATE_LIMIT = os.environ.get("SIGN_IN_RATE_LIMIT", "30 per minute;300 per hour")
        self.SIGN_IN_ACCOUNT_RATE_LIMIT = os.environ.get(
            "SIGN_IN_ACCOUNT_RATE_LIMIT", "10 per minute;30 per hour"
        )
        # How many reverse proxies in front of the app set X-Forwarded-For/-Proto/-Host/-Port
        # (0: none; their headers are then ignored, as any client could send them).
        self.TRUSTED_PROXY_COUNT = _env_int("TRUSTED_PROXY_COUNT", 0)
        # Signed-in sessions, kept on the server: without "keep me signed in" one ends after this
        # many hours without activity; with it, REMEMBER_COOKIE_DURATION after signing in.
        self.SESSION_IDLE_HOURS = _env_int("SESSION_IDLE_HOURS", 12)
        # Ended or expired sessions (devices, addresses) are deleted after this many days.
        self.SESSION_RETENTION_DAYS = _env_int("SESSION_RETENTION_DAYS", 90)
        # Worker processes per machine (gunicorn reads the same variable); None when unset.
        self.WEB_CONCURRENCY = _env_int("WEB_CONCURRENCY", 0) or None
        self.SIGN_UP_RATE_LIMIT = "5 per minute;30 per hour"
        self.RESET_RATE_LIMIT = "5 per minute;20 per hour"
        # Two-factor sign-in: the name authenticator apps show, and limits on code attempts
        # (per address and per account) and on "Confirm it's you" attempts (per account).
        self.TWO_FACTOR_ISSUER = os.environ.get("TWO_FACTOR_ISSUER", "Engage")
        self.TWO_FACTOR_RATE_LIMIT = "10 per minute;50 per hour"
        self.REAUTH_RATE_LIMIT = "5 per minute;20 per hour"
        # Sensitive actions ask for the password again when it was last given longer ago.
        self.REAUTH_MAX_AGE_SECONDS = _env_int("REAUTH_MAX_AGE_SECONDS", 600)

    def problems(self) -> list[str]:
        """What is unsafe or incomplete in these settings, one sentence each."""
        found = []
        if self.MAIL_BACKEND not in {"console", "file", "sendgrid"}:
            found.append(
                f"MAIL_BACKEND must be one of console, file, sendgrid (got {self.MAIL_BACKEND!r})."
            )
        if self.MAIL_BACKEND == "sendgrid" and not self.SENDGRID_API_KEY:
            found.append("MAIL_BACKEND=sendgrid needs SENDGRID_API_KEY to be set.")
        if self.TRUSTED_PROXY_COUNT < 0:
            found.append("TRUSTED_PROXY_COUNT must be 0 (no proxy) or the number of proxies.")
        if self.SESSION_IDLE_HOURS < 1:
            found.append("SESSION_IDLE_HOURS must be a whole number of hours, at least 1.")
        if not _is_day_list(self.GOVERNANCE_REMINDER_DAYS):
            found.append(
                "GOVERNANCE_REMINDER_DAYS must list whole numbers of days above 0, separated by "
                f"commas, e.g. 7,1 (got {self.GOVERNANCE_REMINDER_DAYS!r})."
            )
        return found

    def validate(self) -> None:
        """Raise ``ConfigurationError`` listing every problem, if there is any."""
        found = self.problems()
        if found:
            raise ConfigurationError("\n".join(found))


class DevelopmentConfig(Config):
    """Local development: SQLite in the instance folder, mail written to files."""

    ENV_NAME = "development"

    def __init__(self) -> None:
        super().__init__()
        self.DEBUG = _env_bool("FLASK_DEBUG", False)
        self.SCHEDULER_IN_PROCESS = _env_bool("SCHEDULER_IN_PROCESS", True)
        # Development only: derived from SECRET_KEY when not set (production refuses that).
        self.CONSENT_RECEIPT_KEY = self.CONSENT_RECEIPT_KEY or _derived_receipt_key(self.SECRET_KEY)
        self.ENCRYPTION_KEYS = self.ENCRYPTION_KEYS or _derived_encryption_key(self.SECRET_KEY)


class TestingConfig(Config):
    """The test suite: cheap password hashing, rate limits off unless a test turns them on."""

    ENV_NAME = "testing"

    def __init__(self) -> None:
        super().__init__()
        self.TESTING = True
        self.SECRET_KEY = "testing-secret-key-not-for-production"  # noqa: S105
        self.DATABASE_URL = os.environ.get("ENGAGE_TEST_DATABASE_URL") or None
        self.MAIL_BACKEND = "console"
        self.RATELIMIT_ENABLED = False
        self.SCHEDULER_IN_PROCESS = False
        self.PASSWORD_HASH_TIME_COST = 1
        self.PASSWORD_HASH_MEMORY_COST = 8
        self.PASSWORD_HASH_PARALLELISM = 1
        self.SERVER_NAME = None
        # Tests only: derived from the test secret when not set (production refuses that).
        self.CONSENT_RECEIPT_KEY = self.CONSENT_RECEIPT_KEY or _derived_receipt_key(self.SECRET_KEY)
        self.ENCRYPTION_KEYS = self.ENCRYPTION_KEYS or _derived_encryption_key(self.SECRET_KEY)


# TestingConfig's fixed secret: keys derived from it are public too.
TESTING_SECRET_KEY = "testing-secret-key-not-for-production"  # noqa: S105 - refused in production
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_hex(32))'"  # noqa: S105 - advice
MAKE_FERNET_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)
# What a production secret must have: ``secrets.token_hex(32)`` (64 characters, 256 bits) and
# ``secrets.token_urlsafe(32)`` (43 characters) pass with room to spare; a phrase, a repeated
# pattern or a keyboard walk does not.
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT_CHARACTERS = 12
MIN_SECRET_BITS = 128
# A run this long of one character, or of characters counting up or down (aaaaaaaa, 12345678,
# hgfedcba), is typed, not drawn (in 64 random hex digits one turns up about once in a million).
MAX_SECRET_RUN = 8
# Any setting whose name says it holds a secret of ours is checked the same way. Credentials a
# provider issues (SENDGRID_API_KEY) and public keys are not ours to judge.
NOT_OUR_SECRETS = frozenset({"SENDGRID_API_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY"})


def _alphabet_size(value: str) -> int:
    """How many characters an attacker must try per position, judged from the kinds used."""
    size = 0
    size += 10 if any(c.isdigit() for c in value) else 0
    size += 26 if any(c.islower() for c in value) else 0
    size += 26 if any(c.isupper() for c in value) else 0
    size += 33 if any(not c.isalnum() for c in value) else 0
    return max(size, 1)


def _novel_length(value: str) -> int:
    """The length of ``value`` counting each repeat of an earlier stretch (3 characters or
    more) as one character: what a compressor would keep of it."""
    count, i = 0, 0
    while i < len(value):
        longest = 0
        for length in range(3, len(value) - i + 1):
            if value[i : i + length] in value[: i + length - 1]:
                longest = length
            else:
                break
        i += longest or 1
        count += 1
    return count


def _longest_run(value: str) -> int:
    """The longest stretch of one repeated character or of characters counting up or down."""
    longest = run = 1 if value else 0
    step = None
    for before, after in zip(value, value[1:], strict=False):
        delta = ord(after) - ord(before)
        if delta in (-1, 0, 1) and (run == 1 or delta == step):
            run, step = run + 1, delta
        elif delta in (-1, 0, 1):
            run, step = 2, delta
        else:
            run, step = 1, None
        longest = max(longest, run)
    return longest


def estimated_secret_bits(value: str) -> float:
    """A cautious estimate of the entropy of ``value`` in bits: the smaller of its length once
    repeats are discounted times log2 of the alphabet its kinds of characters span, and
    zxcvbn's estimate (which sees words, dates and keyboard walks) of its first 100 characters.
    """
    from zxcvbn import zxcvbn  # only production checks need it; it loads word lists

    value = value[:256]  # the rest only adds (and the repeat search grows with the length)
    by_length = _novel_length(value) * math.log2(_alphabet_size(value))
    guesses = zxcvbn(value[:100], max_length=100)["guesses"]
    by_zxcvbn = math.log2(max(float(guesses), 1.0))
    return min(by_length, by_zxcvbn)


def secret_problem(name: str, value: str) -> str | None:
    """Why ``value`` is not a safe random secret for setting ``name``, or None when it is."""
    advice = f"Set {name} to a long random value, for example: {MAKE_SECRET}"
    if any(c.isspace() for c in value):
        return f"{name} contains spaces or other white space. {advice}"
    if len(value) < MIN_SECRET_LENGTH:
        return f"{name} is too short: use at least {MIN_SECRET_LENGTH} random characters."
    if len(set(value)) < MIN_SECRET_DISTINCT_CHARACTERS:
        return f"{name} uses too few different characters to be random. {advice}"
    if _longest_run(value) >= MAX_SECRET_RUN:
        return f"{name} contains a long repeat or sequence of characters. {advice}"
    if estimated_secret_bits(value) < MIN_SECRET_BITS:
        return f"{name} is too predictable (under {MIN_SECRET_BITS} bits of randomness). {advice}"
    return None


def _secret_problems(name: str, value: str) -> list[str]:
    problem = secret_problem(name, value)
    return [problem] if problem else []


def _derived_values(derive: Callable[[str], str], secret_key: str) -> set[str]:
    """What ``derive`` makes of the development, testing and configured secrets."""
    return {derive(key) for key in (DEFAULT_SECRET_KEY, TESTING_SECRET_KEY, secret_key)}


def _encryption_key_problems(value: str, secret_key: str) -> list[str]:
    """Each of ``ENCRYPTION_KEYS`` must be a Fernet key (32 url-safe base64 bytes) of random
    bytes, and none the key development derives from a secret."""
    found = []
    derived = _derived_values(_derived_encryption_key, secret_key)
    keys = [part.strip() for part in value.split(",")]
    for number, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
            is_fernet = len(key) == 44 and len(raw) == 32 and key.endswith("=")
        except (ValueError, UnicodeEncodeError):
            is_fernet = False
        if not is_fernet:
            found.append(
                f"ENCRYPTION_KEYS key {number} is not a Fernet key (32 url-safe base64-encoded "
                f"bytes); make one with: {MAKE_FERNET_KEY}"
            )
        elif key in derived:
            found.append(
                f"ENCRYPTION_KEYS key {number} is the key development derives from a secret: "
                f"make a new one with: {MAKE_FERNET_KEY}"
            )
        elif (
            len(set(raw)) < MIN_SECRET_DISTINCT_CHARACTERS
            or _longest_run(raw.decode("latin-1")) >= MAX_SECRET_RUN
        ):
            found.append(
                f"ENCRYPTION_KEYS key {number} is not random: make a new one with: "
                f"{MAKE_FERNET_KEY}"
            )
    return found


def other_secret_problems(config: Config) -> list[str]:
    """Problems of settings named like secrets (``*_KEY``, ``*_SECRET``, ``*_TOKEN``) that
    have no check of their own, when they are set."""
    found = []
    checked = {"SECRET_KEY", "CONSENT_RECEIPT_KEY", "ENCRYPTION_KEYS"} | NOT_OUR_SECRETS
    for name, value in vars(config).items():
        if name in checked or not isinstance(value, str) or not value:
            continue
        if re.search(r"(^|_)(KEY|KEYS|SECRET|TOKEN)$", name):
            found += _secret_problems(name, value)
    return found


class ProductionConfig(Config):
    """Production: PostgreSQL, a real secret, secure cookies."""

    ENV_NAME = "production"

    def __init__(self) -> None:
        super().__init__()
        self.SESSION_COOKIE_SECURE = True
        self.REMEMBER_COOKIE_SECURE = True
        self.MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "sendgrid")

    def problems(self) -> list[str]:
        """Also refuse secrets that are missing, defaults or not random, encryption keys that
        are not Fernet keys or were derived for development, and any database but PostgreSQL."""
        found = []
        if not self.SECRET_KEY or self.SECRET_KEY == DEFAULT_SECRET_KEY:
            found.append(
                "SECRET_KEY is missing or still the development default. Set SECRET_KEY to a "
                "long random value, for example: "
                "python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        else:
            found += _secret_problems("SECRET_KEY", self.SECRET_KEY)
        if not self.CONSENT_RECEIPT_KEY:
            found.append(
                "CONSENT_RECEIPT_KEY is missing: set it to a long random value that never "
                "changes (it signs consent receipts, which must stay verifiable), for example: "
                f"{MAKE_SECRET}"
            )
        elif self.CONSENT_RECEIPT_KEY == self.SECRET_KEY:
            found.append("CONSENT_RECEIPT_KEY must differ from SECRET_KEY.")
        elif self.CONSENT_RECEIPT_KEY in _derived_values(_derived_receipt_key, self.SECRET_KEY):
            found.append(
                "CONSENT_RECEIPT_KEY is the one derived from SECRET_KEY for development: set its "
                f"own long random value, for example: {MAKE_SECRET}"
            )
        else:
            found += _secret_problems("CONSENT_RECEIPT_KEY", self.CONSENT_RECEIPT_KEY)
        if not self.ENCRYPTION_KEYS:
            found.append(
                "ENCRYPTION_KEYS is missing: set it to one or more Fernet keys separated by "
                f"commas (the first encrypts), for example: {MAKE_FERNET_KEY}"
            )
        else:
            found += _encryption_key_problems(self.ENCRYPTION_KEYS, self.SECRET_KEY)
        found += other_secret_problems(self)
        if not self.DATABASE_URL or not self.DATABASE_URL.startswith("postgresql"):
            found.append(
                "Production needs PostgreSQL: set DATABASE_URL to a postgresql+psycopg:// URL "
                "(SQLite is for development and tests only)."
            )
        if (
            self.RATELIMIT_ENABLED
            and self.RATELIMIT_STORAGE_URI.startswith("memory://")
            and self.WEB_CONCURRENCY != 1
        ):
            found.append(
                "RATELIMIT_STORAGE_URI=memory:// counts attempts inside each process, so with "
                "several workers or machines every one counts apart and the limits multiply. Set "
                "RATELIMIT_STORAGE_URI to a shared store, e.g. redis://redis.internal:6379/0 (or "
                "set WEB_CONCURRENCY=1 when a single process serves the site)."
            )
        return found + super().problems()


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(name: str | None = None) -> Config:
    """Build the configuration named by ``name`` or by ``ENGAGE_CONFIG`` (default development)."""
    name = (name or os.environ.get("ENGAGE_CONFIG") or "development").strip().lower()
    try:
        config_class = CONFIGS[name]
    except KeyError:
        raise ConfigurationError(
            f"ENGAGE_CONFIG must be one of {', '.join(CONFIGS)} (got {name!r})."
        ) from None
    return config_class()
