"""Writing an export zip: parts of records as JSON arrays or CSV tables, and
files copied from object storage, streamed into a temporary file on disk.

Nothing is held in memory whole: a JSON part is written record by record into
its zip entry, a stored file is copied through in chunks.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from privacy.exports.schema import columns

COPY_CHUNK = 1024 * 1024


@dataclass
class FileEntry:
    path: str
    part: str
    kind: str  # "records" | "transcript" | "attachment" | "schema"
    bytes: int
    records: int | None = None


@dataclass
class ExportWriter:
    """One zip being written: `records()` for a part, `copy()`/`put()` for files."""

    fileobj: IO[bytes]
    format: str  # "json" | "csv"
    files: list[FileEntry] = field(default_factory=list)
    zip: zipfile.ZipFile = field(init=False)

    def __post_init__(self) -> None:
        self.zip = zipfile.ZipFile(
            self.fileobj, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True
        )

    def records(self, part: str, records: Iterable[dict[str, Any]]) -> int:
        """Write the part `part` (JSON array or CSV table); how many records."""
        ext = "csv" if self.format == "csv" else "json"
        path = f"{part}.{ext}"
        with self.zip.open(path, "w", force_zip64=True) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            count = (
                _write_csv(text, part, records)
                if ext == "csv"
                else _write_json(text, records)
            )
            text.flush()
            text.detach()
        self._entry(path, part, "records", count)
        return count

    def copy(self, path: str, part: str, kind: str, source: IO[bytes]) -> None:
        """Copy a stream (a stored object) into the zip at `path`."""
        with self.zip.open(path, "w", force_zip64=True) as dest:
            shutil.copyfileobj(source, dest, COPY_CHUNK)
        self._entry(path, part, kind, None)

    def put(self, path: str, part: str, kind: str, data: bytes) -> None:
        self.zip.writestr(path, data)
        self._entry(path, part, kind, None)

    def _entry(self, path: str, part: str, kind: str, count: int | None) -> None:
        size = self.zip.getinfo(path).file_size
        self.files.append(FileEntry(path, part, kind, size, count))

    def close(self, manifest: dict[str, Any]) -> None:
        """Write manifest.json (last: it lists every other file) and finish."""
        self.zip.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        self.zip.close()


def _write_json(out: IO[str], records: Iterable[dict[str, Any]]) -> int:
    out.write("[")
    count = 0
    for record in records:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(record, ensure_ascii=False, default=str))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _cell(value: Any) -> Any:
    """A CSV cell: arrays and objects as JSON text, null as an empty cell."""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _write_csv(out: IO[str], part: str, records: Iterable[dict[str, Any]]) -> int:
    names = columns(part)
    writer = csv.writer(out)
    writer.writerow(names)
    count = 0
    for record in records:
        writer.writerow([_cell(record[name]) for name in names])
        count += 1
    return count
