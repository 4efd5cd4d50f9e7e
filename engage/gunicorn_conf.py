"""Gunicorn's settings for Engage, with its logs redacted like the app's own.

Run::

    ENGAGE_CONFIG=production gunicorn -c engage/gunicorn_conf.py engage.wsgi:app

(gunicorn's ``WEB_CONCURRENCY`` sets the workers, ``PORT`` or ``--bind`` the address.)

Gunicorn's access log writes each request line, whose path may hold an emailed link's token
(``/reset-password/<token>``) and whose referrer may too. Every record of the process is
redacted as it is made (:mod:`engage.logs`: token paths of the app's URL rules, secret query
parameters, bearer tokens, email addresses); here that redaction is installed in the master
before the workers fork, and each handler also carries :class:`engage.logs.RedactingFilter`.
"""

from __future__ import annotations

from engage import logs

logs.install_record_factory()

# Gunicorn's default access line plus the time taken (microseconds); see logconfig_dict.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)sus'
loglevel = "info"

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "engage.logs.RedactingFilter"}},
    "formatters": {
        "server": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "%Y-%m-%d %H:%M:%S %z",
        },
        "access": {"format": "%(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "server",
            "filters": ["redact"],
            "stream": "ext://sys.stderr",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "filters": ["redact"],
            "stream": "ext://sys.stdout",
        },
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {
            "level": "INFO",
            "handlers": ["console"],
            "propagate": False,
            "filters": ["redact"],
        },
        "gunicorn.access": {
            "level": "INFO",
            "handlers": ["access"],
            "propagate": False,
            "filters": ["redact"],
        },
    },
}
