"""Row-level security on the tables of retention (privacy 0003) and the audit
anchors (audit 0005): a user's own policies and anchors; the system-wide
defaults (user empty) are seen by everyone, written under maintenance."""

from django.db import migrations

from kimberly.rls_schema import RowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [
        ("kimberly", "0002_row_level_security"),
        ("audit", "0005_anchors"),
        ("privacy", "0003_retention"),
        ("memory", "0016_sealed_content"),
    ]
    operations = [
        RowLevelSecurity("audit_auditanchor"),
        RowLevelSecurity("privacy_retentionpolicy", shared_when_null=True),
    ]
