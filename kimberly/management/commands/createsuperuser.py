"""`createsuperuser` under the maintenance scope (it checks every account's email)."""

from django.contrib.auth.management.commands import createsuperuser

from kimberly.management.operator import OperatorCommand


class Command(OperatorCommand, createsuperuser.Command):
    rls_reason = "operator: create a superuser"
