"""Reading a deletion by its receipt token (no account: the token is the proof)."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from kimberly import rls
from kimberly.api.errors import NotFound
from privacy.erasure.models import DELETION_ID_PREFIX, Deletion
from privacy.erasure.services import token_hash


def _parse(raw: str) -> uuid.UUID | None:
    if raw.startswith(DELETION_ID_PREFIX):
        try:
            return uuid.UUID(raw[len(DELETION_ID_PREFIX) :])
        except ValueError:
            return None
    return None


def deletion_get(*, deletion_id: str, receipt_token: str) -> Deletion:
    """The deletion whose receipt token this is; a wrong token is the same 404
    as a missing id (compared in constant time)."""
    pk = _parse(deletion_id)
    # No login (the account is gone): the id finds the row, the token decides.
    with rls.maintenance("receipt: a deletion by its id, shown only for its token"):
        deletion = Deletion.objects.filter(pk=pk).first() if pk else None
    expected = deletion.token_hash if deletion else "0" * 64
    if not hmac.compare_digest(expected, token_hash(receipt_token)) or not deletion:
        raise NotFound(f"No deletion {deletion_id}.")
    return deletion


def deletion_receipt(deletion: Deletion) -> dict[str, Any] | None:
    """The receipt to show: none until the job finished; never its working state."""
    if deletion.finished_at is None:
        return None
    return {k: v for k, v in deletion.receipt.items() if k != "subject"}
