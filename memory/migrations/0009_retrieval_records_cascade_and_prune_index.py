"""Retrieval records go with their item, in the schema; an index for the prune.

Not atomic, so that nothing long holds a lock that stops the workers' writes:
the constraint is added NOT VALID (checked for new rows at once, a short lock),
then the records of items already gone are deleted, then the old rows are
validated (which does not block writes), and the index is built concurrently.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("memory", "0008_scorerecord_drop_run_index"),
    ]

    operations = [
        migrations.RunSQL(
            """ALTER TABLE memory_retrievalrecord ADD CONSTRAINT memory_retrieval_item_fk
               FOREIGN KEY (item_id) REFERENCES memory_memoryitem (id)
               ON DELETE CASCADE NOT VALID""",
            "ALTER TABLE memory_retrievalrecord DROP CONSTRAINT memory_retrieval_item_fk",
        ),
        migrations.RunSQL(
            """DELETE FROM memory_retrievalrecord r WHERE NOT EXISTS
                   (SELECT 1 FROM memory_memoryitem i WHERE i.id = r.item_id)""",
            migrations.RunSQL.noop,
        ),
        migrations.RunSQL(
            "ALTER TABLE memory_retrievalrecord VALIDATE CONSTRAINT memory_retrieval_item_fk",
            migrations.RunSQL.noop,
        ),
        AddIndexConcurrently(
            model_name="retrievalrecord",
            index=models.Index(fields=["created_at"], name="memory_retrieval_created"),
        ),
    ]
