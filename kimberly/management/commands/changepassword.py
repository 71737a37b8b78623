"""`changepassword` under the maintenance scope (an operator sets any user's)."""

from django.contrib.auth.management.commands import changepassword

from kimberly.management.operator import OperatorCommand


class Command(OperatorCommand, changepassword.Command):
    rls_reason = "operator: change a user's password"
