"""Admin roles as groups: support sees metadata (view permissions on the
project's models; the admin hides content from anyone but superusers), operators
also manage quotas. Superusers have everything. Agents are switched with ./cli
agent, which audits; the admin shows them read-only to both."""

from django.db import migrations

APPS = ("users", "audit", "memory", "chat", "agents", "billing", "privacy")
OPERATOR_EXTRA = ("change_quota",)


def roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for config in apps.get_app_configs():  # permissions exist before groups use them
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(
        content_type__app_label__in=APPS, codename__startswith="view_"
    )
    support, _ = Group.objects.get_or_create(name="support")
    support.permissions.set(view)
    operator, _ = Group.objects.get_or_create(name="operator")
    operator.permissions.set(
        [*view, *Permission.objects.filter(codename__in=OPERATOR_EXTRA)]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0007_data_keys"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("memory", "0015_attachment_offset"),
        ("chat", "0001_initial"),
        ("agents", "0002_tasks_reminders_events"),
        ("privacy", "0002_deletions"),
        ("audit", "0001_initial"),
    ]
    operations = [migrations.RunPython(roles, migrations.RunPython.noop)]
