"""Sentiment strength of a memory's content (VADER), stored when it is written."""

from __future__ import annotations

import threading
from typing import Any

_analyzer: Any = None


_analyzer_lock = threading.Lock()


def sentiment_strength(text: str) -> float:
    """|VADER compound| of the text (first 2,000 characters), in [0, 1]."""
    global _analyzer
    if _analyzer is None:
        with _analyzer_lock:
            if _analyzer is None:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

                _analyzer = SentimentIntensityAnalyzer()
    return round(abs(float(_analyzer.polarity_scores(text[:2000])["compound"])), 4)
