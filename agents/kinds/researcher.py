"""The researcher agent: a question split into sub-queries (agents.research),
each searched in the user's memories and documents through the gateway; the
findings come back with citations (memory ids, and attachment and offset for a
document's chunk). With a model runner configured, also an answer grounded in
those citations; without, the structured digest is the answer.
`params.save: true` keeps the digest in short-term memory (a planned write).

A sensitive memory is cited by its id only: its text goes neither into the
findings, the digest and the answer (nor the model's notes, whose reply is kept
in the result) nor into a trace; a digest citing one is saved as a sensitive
memory (sealed), or, without the sensitive_memory consent, not saved."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents.research import Finding, digest, split_question
from agents.runs import Run
from chat.runners import ContextNote, Prompt, RunnerError, RunnerTimeout, get_runner
from kimberly.api.errors import invalid_field
from kimberly.api.serializers import iso_time
from kimberly.context import Context
from memory import gateway
from users.models import User

ANSWER_INSTRUCTION = (
    "Answer the question using only the numbered notes below; cite them as [n]. "
    "If they do not answer it, say so. Question: "
)


def validate(*, ctx: Context, user: User, task: str, params: dict[str, Any]) -> None:
    if not task.strip():
        raise invalid_field("task", "must be a question")
    if not isinstance(params.get("save", False), bool):
        raise invalid_field("params.save", "must be true or false")


def _search(run: Run) -> tuple[list[str], list[Finding], dict[int, gateway.Recalled]]:
    subs = split_question(run.text)
    findings: list[Finding] = []
    cited: dict[str, int] = {}
    by_citation: dict[int, gateway.Recalled] = {}
    for sub in subs:
        with run.step("search", query=sub[:200]) as step:
            hits = run.recall(sub, settings.AGENT_RESEARCH_PER_QUERY)
            step.detail["found"] = len(hits)
        for hit in hits:
            n = cited.setdefault(hit.memory_id, len(cited) + 1)
            by_citation[n] = hit
            findings.append(
                Finding(
                    sub_query=sub,
                    citation=n,
                    text=hit.quotable,
                    memory_id=hit.memory_id,
                    attachment_id=hit.attachment_id,
                    offset=hit.attachment_offset,
                    score=hit.final,
                )
            )
    return subs, findings, by_citation


def _answer(run: Run, cited: dict[int, gateway.Recalled]) -> str | None:
    runner = get_runner()
    if not runner.configured or not cited:
        return None
    notes = [
        ContextNote(
            memory_id=f"[{n}] {r.memory_id}",
            tier=r.tier,
            content=r.quotable,
            why=r.why,
            created_at=iso_time(r.created_at),
        )
        for n, r in sorted(cited.items())
    ]
    with run.step("answer", model=runner.model) as step:
        try:
            reply = runner.reply(Prompt(ANSWER_INSTRUCTION + run.text, context=notes))
        except (RunnerError, RunnerTimeout) as exc:
            step.detail["error"] = exc.code  # the digest still answers
            return None
    return reply.content


def _save(run: Run, text: str, *, sensitive: bool) -> None:
    with run.step("plan") as step:
        if sensitive and not gateway.may_store_sensitive(run.user):
            step.detail["skipped"] = "sensitive_source"  # no consent to keep it
            return
        run.write(
            "memory.write",
            {
                "content": text[:4000],
                "tags": ["research"],
                "tier": gateway.Tier.SHORT_TERM,
                "sensitive": sensitive,
            },
            "Keep this research digest in your short-term memory"
            + (" (as a sensitive memory)." if sensitive else "."),
        )


def run(run: Run) -> dict[str, Any]:
    subs, findings, cited = _search(run)
    text = digest(run.text, findings)
    answer = None if run.preview else _answer(run, cited)
    if run.params.get("save"):
        _save(run, text, sensitive=any(r.sensitive for r in cited.values()))
    return {
        "question": run.text,
        "sub_queries": subs,
        "findings": [
            {
                "sub_query": f.sub_query,
                "citation": f.citation,
                "memory_id": f.memory_id,
                "attachment_id": f.attachment_id,
                "offset": f.offset,
                "score": f.score,
                "excerpt": f.text[:300],
            }
            for f in findings
        ],
        "digest": text,
        "answer": answer or text,
        "answered_by": "model" if answer else "digest",
    }
