from django.db import migrations

# One round trip instead of two on every audited write: lock the user's chain
# and read its tip. Inside a VOLATILE plpgsql function each statement takes a
# fresh snapshot (READ COMMITTED), so the SELECT sees the tip committed by
# whoever held the lock before us.
SQL = """
CREATE OR REPLACE FUNCTION audit_chain_tip(chain_key text, owner uuid,
                                           OUT tip_seq bigint, OUT tip_hash text)
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(chain_key, 0));
    SELECT seq, hash INTO tip_seq, tip_hash FROM audit_auditevent
     WHERE user_id IS NOT DISTINCT FROM owner ORDER BY seq DESC LIMIT 1;
END
$$ LANGUAGE plpgsql VOLATILE;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]
    operations = [
        migrations.RunSQL(
            SQL, "DROP FUNCTION IF EXISTS audit_chain_tip(text, uuid);"
        )
    ]
