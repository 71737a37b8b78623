"""Meditation: each user's memories re-scored and retention decided, explained
and (unless a dry run) applied, nightly and on demand.

    scoring.py    the v1 score: four signals in one SQL statement per batch
    retention.py  promote/expire, archive over quota, purge, cap: the SQL
    runs.py       a batch of user runs in one transaction: lock, decide, apply
    forecast.py   what the next run would decide, computed and rolled back
    dispatch.py   handing runs to workers: on demand, nightly, when stale
"""

from memory.meditation.dispatch import (
    meditation_all_inline,
    meditation_all_refresh,
    meditation_prune_records,
    meditation_queue,
    meditation_queue_all,
    meditation_requeue_stale,
    meditation_run_batch,
)
from memory.meditation.forecast import Forecast, meditation_forecast
from memory.meditation.runs import meditation_run, meditation_run_many
from memory.meditation.scoring import SCORING_VERSION, weights_for

__all__ = [
    "SCORING_VERSION",
    "Forecast",
    "meditation_all_inline",
    "meditation_all_refresh",
    "meditation_forecast",
    "meditation_prune_records",
    "meditation_queue",
    "meditation_queue_all",
    "meditation_requeue_stale",
    "meditation_run",
    "meditation_run_batch",
    "meditation_run_many",
    "weights_for",
]
