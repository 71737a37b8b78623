#!/usr/bin/env python
"""Django's command-line utility. With no DATABASE_URL/REDIS_URL it runs against
the embedded servers, starting them for the command if they are not running."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimberly.settings.base")
    from django.core.management import execute_from_command_line

    from kimberly.runtime import embedded_services, external

    if external("DATABASE_URL") and external("REDIS_URL"):
        execute_from_command_line(sys.argv)
        return

    with embedded_services():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
