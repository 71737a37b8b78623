"""The JSON parser: DRF's, with integers bounded to what PostgreSQL's bigint holds."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import IO, Any, cast

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

# No number this API accepts is anywhere near 2^63; Python's json would hand a
# 400-digit literal on as an exact int, and float(), math.isfinite() or a bigint
# column then fail deep inside a service (a 500) instead of here (a 400).
MAX_INT = 2**63 - 1


class _IntegerTooLarge(ValueError):
    pass


def _bounded_int(literal: str) -> int:
    # Check the length first: int() of a huge literal is slow and capped anyway.
    if len(literal.lstrip("-")) > 19:
        raise _IntegerTooLarge
    value = int(literal)
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise _IntegerTooLarge
    return value


class BoundedJSONParser(parsers.JSONParser):
    """application/json; an integer outside the signed 64-bit range is a 400."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        # DRF's own charset check (missing from the stubs).
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            return json.load(
                cast(IO[str], codecs.getreader(encoding)(stream)),
                parse_constant=json.strict_constant if self.strict else None,
                parse_int=_bounded_int,
            )
        except _IntegerTooLarge:
            # The literal is not echoed back: it may be megabytes long.
            raise ParseError(
                "JSON parse error - integers must be within -2^63 .. 2^63-1."
            ) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
