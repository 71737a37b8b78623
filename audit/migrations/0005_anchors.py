from django.db import migrations, models

# Retention may cut a chain, and only so: a DELETE of events passes the
# append-only trigger only for one chain's prefix up to an anchor already
# written, older than the anchor's cut and the cut at least a day old, and only
# while the pruning transaction names that anchor in the setting
# kimberly.audit_prune ("<user id or global>:<seq>"; audit/retention.py). UPDATE
# stays refused, and anchors themselves are append-only.
SQL = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
DECLARE
    allowed text := coalesce(current_setting('kimberly.audit_prune', true), '');
    named_seq bigint;
    anchored boolean := false;
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_auditevent' AND allowed <> ''
       AND split_part(allowed, ':', 1) = coalesce(OLD.user_id::text, 'global') THEN
        named_seq := split_part(allowed, ':', 2)::bigint;
        -- only the anchor the setting names (one index lookup, whatever the
        -- number of anchors), only events it covers, and only a cut at least
        -- a day old: recent history is never cut
        IF OLD.user_id IS NULL THEN
            SELECT true INTO anchored FROM audit_auditanchor a
             WHERE a.user_id IS NULL AND a.through_seq = named_seq
               AND OLD.created_at < a.cut_before
               AND a.cut_before <= now() - interval '1 day';
        ELSE
            SELECT true INTO anchored FROM audit_auditanchor a
             WHERE a.user_id = OLD.user_id AND a.through_seq = named_seq
               AND OLD.created_at < a.cut_before
               AND a.cut_before <= now() - interval '1 day';
        END IF;
        IF OLD.seq <= named_seq AND coalesce(anchored, false) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_auditanchor_append_only
    BEFORE UPDATE OR DELETE ON audit_auditanchor
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
"""

REVERSE = """
DROP TRIGGER IF EXISTS audit_auditanchor_append_only ON audit_auditanchor;
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_chain_tip_uses_the_index")]
    operations = [
        migrations.CreateModel(
            name="AuditAnchor",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("user_id", models.UUIDField(null=True)),
                ("through_seq", models.PositiveBigIntegerField()),
                ("through_hash", models.CharField(max_length=64)),
                ("pruned", models.PositiveBigIntegerField()),
                ("cut_before", models.DateTimeField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user_id", "through_seq"),
                        name="audit_anchor_user_seq",
                        nulls_distinct=False,
                    )
                ]
            },
        ),
        migrations.RunSQL(SQL, REVERSE),
    ]
