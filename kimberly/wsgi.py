import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimberly.settings.base")

# Tracing (settings.OTEL_ENABLED) in each process that serves requests: gunicorn
# imports this module in every worker, after the fork. Before the application:
# the handler takes its middleware list (with the tracing one) when it is made.
from kimberly import tracing

tracing.setup("web")
application = get_wsgi_application()
