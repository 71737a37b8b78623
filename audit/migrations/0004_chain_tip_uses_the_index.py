"""audit_chain_tip read the tip with `user_id IS NOT DISTINCT FROM owner`, which
no index can answer: every append scanned the whole audit table (found by
bench/meditation_scale.py, where appends slowed to ~1 s at 100k events). The
same function, with an indexable predicate for each case."""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION audit_chain_tip(chain_key text, owner uuid,
                                           OUT tip_seq bigint, OUT tip_hash text)
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(chain_key, 0));
    IF owner IS NULL THEN
        SELECT seq, hash INTO tip_seq, tip_hash FROM audit_auditevent
         WHERE user_id IS NULL ORDER BY seq DESC LIMIT 1;
    ELSE
        SELECT seq, hash INTO tip_seq, tip_hash FROM audit_auditevent
         WHERE user_id = owner ORDER BY seq DESC LIMIT 1;
    END IF;
END
$$ LANGUAGE plpgsql VOLATILE;
"""

PREVIOUS = """
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
    dependencies = [("audit", "0003_chain_tip_function")]
    operations = [migrations.RunSQL(SQL, PREVIOUS)]
