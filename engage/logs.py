"""Keeping link tokens, bearer tokens, passwords and email addresses out of the logs.

Emailed links carry tokens in their paths (``/reset-password/<token>``, ``/verify-email/<token>``,
``/newsletters/unsubscribe/<token>``…): whoever reads a log line that holds one can use the
link. Error messages and tracebacks can hold addresses. Logs travel further than the database
(files, log shippers, support tickets), so none of this may reach them.

:func:`install` (called by ``create_app``) redacts every log record of the process when it is
created, whichever logger made it (Flask's, Werkzeug's access log, gunicorn's, SQLAlchemy's,
APScheduler's) and whichever handler writes it:

- the token segments of the paths of every URL rule whose argument is named like a secret
  (``token``, ``*_token``, ``key``, ``*_key``, ``secret``), read from the app's URL map;
- the values of query parameters named like a secret (``token``, ``key``, ``code``,
  ``password``, ``signature``…, also with a prefix such as ``api_key``) and of bearer tokens;
- email addresses (also percent-encoded);
- during a request, the literal values of its secret path arguments, secret query parameters,
  bearer token and already-parsed password and token form fields, wherever they appear;
- the values PostgreSQL quotes in its error details (``Key (email)=(…)``, ``Failing row
  contains (…)``), and SQLAlchemy's result rows (at DEBUG it logs each row it reads).

The message is formatted once (``msg % args``) and replaced by its redacted text; a traceback is
formatted and redacted into ``exc_text`` (and the live exception dropped from the record when the
redaction changed its text). :class:`RedactingFilter` applies the same to records made
elsewhere (``engage/gunicorn_conf.py`` puts it on gunicorn's handlers as well).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, has_request_context, request

REDACTED = "[redacted]"
EMAIL_REDACTED = "[email]"
# Names of URL arguments, query parameters and form fields whose values are secrets.
SECRET_NAME = re.compile(
    r"^(?:[a-z0-9]+[_-])*(?:token|key|code|secret|password|passphrase|signature|otp)$",
    re.IGNORECASE,
)
# URL rule arguments holding secrets (``registry_code`` is a public name, ``token_id`` an id).
SECRET_PATH_ARGUMENT = re.compile(r"^(?:.+_)?(?:token|key|secret)$", re.IGNORECASE)
# Literal values shorter than this are not searched for (a 6-digit code would hit numbers).
MIN_LITERAL_LENGTH = 8

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]+(?:@|%40)(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]{2,}", re.IGNORECASE
)
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9]+[_-])*(?:token|key|code|secret|password|passphrase|"
    r"signature|otp)=)[^&#\s\"'<>]*",
    re.IGNORECASE,
)
_BEARER = re.compile(
    r"(?P<scheme>\b(?:[Bb]earer\s+|Authorization['\"]?\s*[:=,]\s*['\"]?(?:\w+\s+)?))"
    r"[A-Za-z0-9._~+/=-]{8,}"
)
# PostgreSQL's error details quote the values of the failing row or key (hide_parameters
# covers only what SQLAlchemy adds to the message, not the database's own words).
_FAILING_ROW = re.compile(r"(Failing row contains )\(.*?\)(?=\.?\s*$)", re.MULTILINE | re.DOTALL)
_KEY_VALUES = re.compile(r"(\bKey \((?:[^()]|\([^()]*\))*\)=)\((?:[^()]|\([^()]*\))*\)")
_RULE_PART = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?(?P<name>[a-zA-Z_]\w*)>"
)
_SEGMENT = r"[^/?#\s\"'<>]+"

_lock = threading.Lock()
# Compiled patterns of token paths, by rule (several apps in one process share them).
_path_patterns: dict[str, re.Pattern[str]] = {}
_previous_factory: Callable[..., logging.LogRecord] | None = None


def _rule_pattern(rule: str) -> re.Pattern[str] | None:
    """A pattern matching paths of ``rule`` whose secret segments are named groups, or None
    when the rule has no secret argument."""
    parts, position, secret = [], 0, False
    for number, match in enumerate(_RULE_PART.finditer(rule)):
        parts.append(re.escape(rule[position : match.start()]))
        segment = r"[^?#\s\"'<>]+" if match.group("converter") == "path" else _SEGMENT
        if SECRET_PATH_ARGUMENT.match(match.group("name")):
            parts.append(f"(?P<secret{number}>{segment})")
            secret = True
        else:
            parts.append(segment)
        position = match.end()
    if not secret:
        return None
    parts.append(re.escape(rule[position:]))
    return re.compile("".join(parts))


def token_path_patterns(rules: Iterable[str]) -> dict[str, re.Pattern[str]]:
    """The redaction patterns of those ``rules`` (URL rule strings) that carry a secret."""
    patterns = {}
    for rule in rules:
        pattern = _rule_pattern(rule)
        if pattern is not None:
            patterns[rule] = pattern
    return patterns


def _redact_secret_groups(match: re.Match[str]) -> str:
    text, start = [], match.start()
    for name, value in match.groupdict().items():
        if value is None or not name.startswith("secret"):
            continue
        text.append(match.string[start : match.start(name)])
        text.append(REDACTED)
        start = match.end(name)
    text.append(match.string[start : match.end()])
    return "".join(text)


def redact(text: str, literals: Iterable[str] = ()) -> str:
    """``text`` with secrets and email addresses replaced (see the module's documentation).

    :param literals: exact values to replace wherever they appear (a request's tokens).
    """
    for literal in sorted(set(literals), key=len, reverse=True):
        if len(literal) >= MIN_LITERAL_LENGTH:
            text = text.replace(literal, REDACTED)
    for pattern in list(_path_patterns.values()):
        text = pattern.sub(_redact_secret_groups, text)
    text = _QUERY_SECRET.sub(lambda m: m.group("name") + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group("scheme") + REDACTED, text)
    text = _FAILING_ROW.sub(lambda m: m.group(1) + f"({REDACTED})", text)
    text = _KEY_VALUES.sub(lambda m: m.group(1) + f"({REDACTED})", text)
    return _EMAIL.sub(EMAIL_REDACTED, text)


def _request_literals() -> list[str]:
    """The secret values of the current request, if there is one."""
    if not has_request_context():
        return []
    found: list[str] = []
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and (SECRET_PATH_ARGUMENT.match(name) or SECRET_NAME.match(name)):
            found.append(value)
    found += [value for name, value in request.args.items(multi=True) if SECRET_NAME.match(name)]
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme and credentials.strip():
        found.append(credentials.strip())
    # Only a form already read: reading the body from inside a log call could fail or block.
    form = request.__dict__.get("form")
    if form is not None:
        found += [value for name, value in form.items(multi=True) if SECRET_NAME.match(name)]
    return found


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace ``record``'s message, arguments and traceback by their redacted text (in
    place; redacting twice changes nothing). Never raises: a record that cannot be redacted
    keeps only its level, logger and place."""
    try:
        literals = _request_literals()
        if record.name.startswith("sqlalchemy.engine") and record.msg == "Row %r":
            message = "Row [values not logged]"
        else:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken format string must still be redacted
                message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message, literals), ()
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text, literals)
            if record.exc_text != text:
                record.exc_info = None  # the live exception holds what was redacted
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, literals)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, literals)
    except Exception:  # noqa: BLE001 - logging must go on, without the unredacted text
        record.msg, record.args = "[log message withheld: it could not be redacted]", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record it sees (see :func:`redact_record`); for
    handlers of records not made through the standard factory."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` and let it through."""
        redact_record(record)
        return True


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous_factory is not None
    return redact_record(_previous_factory(*args, **kwargs))


def install_record_factory() -> None:
    """Make every log record of this process redacted as it is created (once per process)."""
    global _previous_factory
    with _lock:
        if _previous_factory is not None:
            return
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_redacting_factory)


def install(app: Flask) -> None:
    """Redact the token paths of ``app``'s URL rules, query secrets and email addresses in
    every log record of the process (call once the blueprints are registered)."""
    rules = [rule.rule for rule in app.url_map.iter_rules()]
    with _lock:
        _path_patterns.update(token_path_patterns(rules))
    install_record_factory()
