"""What goes in the zip, in order: one step per part (see export.schema.json).

A step writes its part through the ExportWriter and answers its counts; the
job counts one step done after each (the progress GET /v1/user/export shows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chat.models import Conversation
from chat.transcripts import transcript_bytes, transcript_key
from kimberly import storage
from privacy.exports import activity, records
from privacy.exports.archive import ExportWriter
from privacy.exports.records import Record
from privacy.exports.schema import SCHEMA_PATH
from users.models import User

Counts = dict[str, int]


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[ExportWriter, User], Counts]


def _records(part: str, read: Callable[[User], Iterator[Record]]) -> Step:
    return Step(part, lambda w, user: {part: w.records(part, read(user))})


def _write_transcript(w: ExportWriter, c: Conversation) -> None:
    """The stored transcript when it is up to date, else made now from the rows
    (the object is rewritten after each exchange by a task that may lag)."""
    path = activity.transcript_path(c)
    if c.message_count and c.transcript_messages >= c.message_count:
        try:
            with storage.open(transcript_key(c.user_id, c.public_id)) as body:
                w.copy(path, "conversations", "transcript", body)
            return
        except storage.ObjectNotFound:
            pass
    w.put(path, "conversations", "transcript", transcript_bytes(c)[0])


def conversations_step(w: ExportWriter, user: User) -> Counts:
    """conversations.<ext>, and each conversation's transcript file."""
    rows = []
    for c in activity.conversations_of(user):
        _write_transcript(w, c)
        rows.append(activity.conversation(c, activity.transcript_path(c)))
    return {"conversations": w.records("conversations", rows), "transcripts": len(rows)}


def attachments_step(w: ExportWriter, user: User) -> Counts:
    """attachments.<ext>, and each stored file (a lost object: `file` null)."""
    rows, files = [], 0
    for a in activity.attachments_of(user):
        path: str | None = activity.attachment_path(a)
        try:
            with storage.open(a.object_key) as body:
                w.copy(str(path), "attachments", "attachment", body)
            files += 1
        except storage.ObjectNotFound:
            path = None
        rows.append(activity.attachment(a, path))
    return {"attachments": w.records("attachments", rows), "attachment_files": files}


def schema_step(w: ExportWriter, user: User) -> Counts:
    w.put("export.schema.json", "schema", "schema", SCHEMA_PATH.read_bytes())
    return {}


STEPS: list[Step] = [
    _records("profile", records.profile),
    _records("consents", records.consents),
    _records("memories", records.memories),
    _records("goals", records.goals),
    _records("proposals", records.proposals),
    _records("imports", records.imports),
    _records("quotas", records.quotas),
    _records("meditation_runs", records.meditation_runs),
    _records("retrievals", records.retrievals),
    Step("conversations", conversations_step),
    _records("messages", activity.messages),
    Step("attachments", attachments_step),
    _records("agent_tasks", activity.agent_tasks),
    _records("reminders", activity.reminders),
    _records("events", activity.events),
    _records("audit_events", activity.audit_events),
    Step("schema", schema_step),
]
