"""The newsletters' blueprints; the view modules add their routes to them.

- ``newsletters``: pages for subscribers (preferences, public sign-up, confirmation, one-click
  unsubscribe, the archive of past newsletters);
- ``newsletters_staff``: staff pages (lists, campaigns, progress);
- ``newsletters_hooks``: SendGrid's Event Webhook and the one-click unsubscribe POST of mail
  programs (no CSRF token: the first is verified by its signature, the second by its token).
"""

from __future__ import annotations

from flask import Blueprint

newsletters = Blueprint("newsletters", __name__, url_prefix="/newsletters")
newsletters_staff = Blueprint("newsletters_staff", __name__, url_prefix="/staff/newsletters")
newsletters_hooks = Blueprint("newsletters_hooks", __name__, url_prefix="/newsletters")
