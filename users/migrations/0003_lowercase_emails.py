"""Store every email lower-cased, as login looks it up (issue 9).

Accounts added in the admin kept the case they were typed in and could never
log in. The case-insensitive unique constraint guarantees that no two rows
differ only in case, so lower-casing cannot collide.
"""

from django.db import migrations
from django.db.models import F
from django.db.models.functions import Lower


def lowercase_emails(apps, schema_editor):
    User = apps.get_model("users", "User")
    mixed = User.objects.annotate(low=Lower("email")).exclude(email=F("low"))
    for user in mixed.only("email").iterator():
        user.email = user.email.lower()
        user.save(update_fields=["email"])


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0002_meditation_scoring"),
    ]

    operations = [
        migrations.RunPython(lowercase_emails, migrations.RunPython.noop),
    ]
