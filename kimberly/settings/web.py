"""The web UI (web/): sessions, sign-in, email, and the Content-Security-Policy.

The UI signs people in with a session cookie; the API keeps bearer tokens only
(REST_FRAMEWORK's authentication classes in base.py), so a session never
authenticates an API call and the API needs no CSRF check.
"""

from __future__ import annotations

from csp.constants import NONE, SELF

from kimberly.env import env_bool, env_int, env_str

LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:home"

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
SESSION_COOKIE_HTTPONLY = True
# After an account's deletion the browser's new, signed-out session holds only
# the deletion receipt's token, for this long.
WEB_RECEIPT_SESSION_SECONDS = env_int("WEB_RECEIPT_SESSION_SECONDS", 24 * 3600)
SESSION_COOKIE_SAMESITE = "Lax"
# htmx sends the token from the page (hx-headers), so scripts never read the cookie.
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "web.views.errors.csrf_failure"

# Password reset mails: printed on the console unless an SMTP server is named.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Kimberly <noreply@localhost>")
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)
# Reset mails asked for per client IP and per email address per window
# (LOGIN_RATE_WINDOW_SECONDS): nobody floods an inbox through the form.
PASSWORD_RESET_RATE = env_int("PASSWORD_RESET_RATE", 5)

# Strict: no inline script or style anywhere, no eval; every script and style
# sheet is a static file of this origin (htmx is vendored, configured in
# base.html to inject no styles and evaluate nothing).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

# Memories per page of the memory manager's list.
WEB_MEMORY_PAGE_SIZE = env_int("WEB_MEMORY_PAGE_SIZE", 50)
# Hits "find by meaning" shows: the best ones of the hybrid query (1-50). Each
# more widens the candidate pool the query re-ranks (4 per hit above 50).
WEB_MEMORY_SEARCH_HITS = env_int("WEB_MEMORY_SEARCH_HITS", 20)

# Chat replies streamed to the page as server-sent events (off: each reply
# comes whole in the htmx response to the composer).
WEB_CHAT_STREAM = env_bool("WEB_CHAT_STREAM", True)
