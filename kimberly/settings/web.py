"""The web UI (web/): sessions, sign-in, email, and the Content-Security-Policy.

The UI signs people in with a session cookie; the API keeps bearer tokens only
(REST_FRAMEWORK's authentication classes in base.py), so a session never
authenticates an API call and the API needs no CSRF check.
"""

from __future__ import annotations

from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

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
# Hits "find by meaning" shows: the best ones of the hybrid query (1-50; above
# RETRIEVAL_CANDIDATES / 4 each more widens the candidate pool it re-ranks).
WEB_MEMORY_SEARCH_HITS = env_int("WEB_MEMORY_SEARCH_HITS", 20)
if not 1 <= WEB_MEMORY_SEARCH_HITS <= 50:
    raise ImproperlyConfigured("WEB_MEMORY_SEARCH_HITS must be from 1 to 50")
# Chat replies the web process answers in the background at once (streaming
# off); one more message is refused with 503 chat_busy until one is done.
WEB_CHAT_REPLY_THREADS = env_int("WEB_CHAT_REPLY_THREADS", 4)
if WEB_CHAT_REPLY_THREADS < 1:
    raise ImproperlyConfigured("WEB_CHAT_REPLY_THREADS must be at least 1")

# Chat replies streamed to the page as server-sent events (off: the composer's
# htmx response shows the message, the model answers in a background thread of
# the web process, and the page polls /chat/pending/<reply> each second until
# the reply, its refusal, or the model's time limit has passed: chat/pending.py).
WEB_CHAT_STREAM = env_bool("WEB_CHAT_STREAM", True)
