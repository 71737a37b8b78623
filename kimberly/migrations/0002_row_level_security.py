"""Row-level security on every table of user data (kimberly/rls.py, rls_schema.py).

A later migration that adds such a table adds its own RowLevelSecurity line."""

from django.db import migrations

from kimberly.rls_schema import RowLevelSecurity

USER_ID_TABLES = [
    "django_admin_log",
    "knox_authtoken",
    "users_user_groups",
    "users_user_user_permissions",
    "users_consent",
    "users_datakey",
    "audit_auditevent",
    "memory_memoryitem",
    "memory_quota",
    "memory_idempotencykey",
    "memory_memoryembedding",
    "memory_retrievalrecord",
    "memory_goal",
    "memory_meditationrun",
    "memory_attachment",
    "memory_memoryimport",
    "memory_memoryproposal",
    "chat_conversation",
    "chat_message",
    "agents_useragentswitch",
    "agents_agenttask",
    "agents_reminder",
    "agents_event",
    "privacy_deletion",
    "privacy_dataexport",
]


class Migration(migrations.Migration):
    dependencies = [
        ("kimberly", "0001_vector_extension"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("knox", "0009_extend_authtoken_field"),
        ("users", "0008_admin_roles"),
        ("audit", "0004_chain_tip_uses_the_index"),
        ("memory", "0015_attachment_offset"),
        ("chat", "0001_initial"),
        ("agents", "0002_tasks_reminders_events"),
        ("privacy", "0002_deletions"),
    ]
    operations = [
        RowLevelSecurity("users_user", column="id"),
        *(RowLevelSecurity(t) for t in USER_ID_TABLES),
        RowLevelSecurity("memory_memoryversion", parent=("memory_memoryitem", "item_id")),
        RowLevelSecurity("memory_scorerecord", parent=("memory_meditationrun", "run_id")),
        RowLevelSecurity("chat_messagecontext", parent=("chat_message", "message_id")),
    ]
