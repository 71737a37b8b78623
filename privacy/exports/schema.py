"""export.schema.json, the documented layout of an export: which parts there
are, the records of each, and so the columns of each CSV table."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("export.schema.json")
FORMAT_VERSION = 1


@cache
def export_schema() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return result


def part_defs() -> dict[str, str]:
    """Each part's name → the `$defs` entry its records follow (manifest.parts)."""
    parts = export_schema()["$defs"]["manifest"]["properties"]["parts"]["properties"]
    return {name: spec["const"] for name, spec in parts.items()}


def columns(part: str) -> list[str]:
    """A part's record properties in schema order: its CSV header."""
    definition = export_schema()["$defs"][part_defs()[part]]
    return list(definition["properties"])
