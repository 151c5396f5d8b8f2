"""The operator page at ``/admin``: a page for people in front of the admin JSON API.

``AdminPage`` answers everything under ``/admin`` for the HTTP app (the page, its files, the
CSRF rule for browsers, then ``AdminApi``); ``ServedSettings`` is what the app was built with,
shown with secrets left out. See ``_page`` for how a browser authenticates.
"""

from ._csrf import ACTION_HEADER, action_refusal
from ._overview import MAX_SESSIONS_LISTED, Overview
from ._page import CONTENT_SECURITY_POLICY, AdminPage, wants_html
from ._settings import ServedSettings, auth_summary, public_url, settings_view

__all__ = [
    "ACTION_HEADER",
    "CONTENT_SECURITY_POLICY",
    "MAX_SESSIONS_LISTED",
    "AdminPage",
    "Overview",
    "ServedSettings",
    "action_refusal",
    "auth_summary",
    "public_url",
    "settings_view",
    "wants_html",
]
