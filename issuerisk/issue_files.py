"""GitHub issue object files (JSON Lines or arrays, UTF-8 with or without a BOM, gzip too) to typed rows, as pure code.

What ``GET /repos/{owner}/{repo}/issues`` (or ``/issues/{number}``) returns, read
record by record: each becomes a typed bronze row or a reject with file, line, reason
and detail. Parsing is total: whatever one record holds (broken JSON, a wrong type, a
number or date Spark cannot store, a lone surrogate, invalid UTF-8, a non-http link,
too many bytes) rejects that record only. The ingest job (:mod:`issuerisk.jobs.ingest`)
runs :func:`iter_rows` in Spark tasks; the kinds classifier's reference corpus reads
files with it directly.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from issuerisk.conf.settings import IngestConfig
from issuerisk.schemas.bronze import BRONZE_ISSUES

SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
LINES_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
RAW_LIMIT = 65536
GZIP_CHUNK = 1 << 18
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
INT64 = 1 << 63
BATCH_ROWS = 2000
# Spark and Arrow store years 1 to 9999; PySpark turns a timestamp into a local-time datetime, which
# fails within a day (and a fold probe) of those ends in some time zone, so two days are kept off each.
EARLIEST = datetime(1, 1, 3, tzinfo=timezone.utc)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone.utc)
MAX_RECORD_BYTES = IngestConfig.model_fields["max_record_bytes"].default
MAX_FILE_BYTES = IngestConfig.model_fields["max_file_bytes"].default
_SURROGATE = re.compile("[\ud800-\udfff]")
_HTTP = re.compile(r"https?://[^\s/?#]", re.IGNORECASE)
_BLANK = re.compile(rb"[ \t\r\n]*")


class IngestError(ValueError):
    """The ingest job was given nothing it can read."""


class RecordError(ValueError):
    """One record cannot be accepted; ``reason`` is the reject category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# What a parse task emits: bronze columns (all nullable), plus reject columns when rejected.
PARSED = pa.schema(
    [
        pa.field(f.name, f.type, True)
        for f in BRONZE_ISSUES.arrow
        if f.name not in ("run_id", "ingested_at", "framework")
    ]
    + [pa.field("reason", pa.string()), pa.field("detail", pa.string()), pa.field("raw", pa.string())]
)

# One record as _records yields it: (line, text, parsed object, reject reason, detail, check_text).
# A reason means the record is rejected already; check_text means its strings may hold lone surrogates.
Record = tuple[int, str, Any, str | None, str | None, bool]


def find_files(paths: list[str]) -> list[str]:
    """Expand files and folders into the sorted list of issue files.

    Raises:
        IngestError: a path does not exist, or nothing readable was found.
    """
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.name.endswith(SUFFIXES))
        elif path.is_file():
            files.append(str(path))
        else:
            raise IngestError(
                f"input path {raw!r} does not exist; pass files or folders of GitHub issue JSON (.json, .jsonl, .gz)"
            )
    if not files:
        raise IngestError(f"no issue files (*{', *'.join(SUFFIXES)}) under {paths}")
    return sorted(set(os.path.abspath(f) for f in files))


def _timestamp(obj: dict[str, Any], field: str, required: bool) -> datetime | None:
    value = obj.get(field)
    if value is None:
        if required:
            raise RecordError("missing_field", f"{field} is missing")
        return None
    if not isinstance(value, str):
        raise RecordError(
            "wrong_type", f"{field} must be an ISO-8601 string, got {type(value).__name__} {str(value)[:80]!r}"
        )
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError("bad_date", f"{field}={value[:80]!r} is not an ISO-8601 date") from None
    try:
        parsed = parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        parsed = None
    if parsed is None or not EARLIEST <= parsed <= LATEST:
        raise RecordError(
            "out_of_range", f"{field}={value[:80]!r} is outside {EARLIEST.date()}..{LATEST.date()} in UTC"
        )
    return parsed


def _typed(
    obj: dict[str, Any], field: str, kind: type | tuple[type, ...], required: bool, name: str | None = None
) -> Any:
    value = obj.get(field)
    if value is None:
        if required:
            raise RecordError("missing_field", f"{name or field} is missing")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        kinds = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RecordError(
            "wrong_type", f"{name or field} must be {kinds}, got {type(value).__name__} {str(value)[:80]!r}"
        )
    return value


def _integer(obj: dict[str, Any], field: str, required: bool) -> int | None:
    """An int that fits Spark's ``long``; a whole number beyond it (orjson reads those as floats) is out of range."""
    value = obj.get(field)
    if type(value) is int:
        if -INT64 <= value < INT64:
            return value
        digits = str(value)
        shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits.lstrip('-'))} digits)"
        raise RecordError("out_of_range", f"{field}={shown} is outside the 64-bit integer range")
    if isinstance(value, float) and value.is_integer() and abs(value) >= INT64:
        raise RecordError("out_of_range", f"{field}={value!r} is outside the 64-bit integer range")
    return _typed(obj, field, int, required)


def _url(obj: dict[str, Any], field: str) -> str | None:
    """An http(s) link or None: anything else (javascript:, data:, relative) would be a live link in the report."""
    value = _typed(obj, field, str, False)
    if value is None or _HTTP.match(value):
        return value
    raise RecordError("bad_url", f"{field}={value[:80]!r} is not an absolute http(s) URL")


def _labels(obj: dict[str, Any]) -> list[str | None]:
    names = []
    for index, label in enumerate(_typed(obj, "labels", list, False) or ()):
        name = label.get("name") if isinstance(label, dict) else label
        if name is not None and type(name) is not str:
            where = f"labels[{index}].name" if isinstance(label, dict) else f"labels[{index}]"
            raise RecordError("wrong_type", f"{where} must be str, got {type(name).__name__} {str(name)[:80]!r}")
        names.append(name)
    return names


def _check_text(row: dict[str, Any]) -> None:
    """Raise ``bad_text`` for a lone surrogate (JSON allows the escape "\\ud800"; UTF-8, Arrow and Spark do not)."""
    for field, value in row.items():
        for index, text in enumerate(value if isinstance(value, list) else (value,)):
            if isinstance(text, str) and (found := _SURROGATE.search(text)):
                where = f"{field}[{index}]" if isinstance(value, list) else field
                raise RecordError(
                    "bad_text",
                    f"{where} holds a lone surrogate {found.group().encode('utf-8', 'backslashreplace').decode()}"
                    f" at character {found.start()}, which is not Unicode text",
                )


def repository_of(obj: dict[str, Any]) -> str:
    """owner/name from ``repository_url`` (api.github.com or GitHub Enterprise) or ``html_url``."""
    for field, marker in (("repository_url", "/repos/"), ("html_url", "://")):
        url = obj.get(field)
        if isinstance(url, str) and marker in url:
            tail = url.split(marker, 1)[1]
            parts = tail.split("/")
            if field == "html_url":
                parts = parts[1:]
            if len(parts) >= 2 and parts[0] and parts[1]:
                return f"{parts[0]}/{parts[1]}"
    raise RecordError("missing_field", "repository_url (or html_url) naming owner/name is missing")


def parse_record(obj: Any, check_text: bool = True) -> dict[str, Any]:
    """Typed bronze fields of one GitHub issue object, every value storable as its Arrow/Spark type.

    Args:
        check_text: look for lone surrogates in the strings; :func:`parse_file` skips it for
            records orjson read, which refuses them.

    Raises:
        RecordError: the object lacks id/number/title/created_at, has a wrong type, an unparseable
            date, a number or date beyond Spark's range, a lone surrogate, or a non-http(s) ``html_url``.
    """
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    user = obj.get("user") if isinstance(obj.get("user"), dict) else {}
    row = {
        "repository": repository_of(obj),
        "number": _integer(obj, "number", True),
        "id": _integer(obj, "id", True),
        "title": _typed(obj, "title", str, True),
        "body": _typed(obj, "body", str, False),
        "state": _typed(obj, "state", str, False),
        "state_reason": _typed(obj, "state_reason", str, False),
        "labels": _labels(obj),
        "user_login": _typed(user, "login", str, False, "user.login"),
        "user_type": _typed(user, "type", str, False, "user.type"),
        "author_association": _typed(obj, "author_association", str, False),
        "comments": _integer(obj, "comments", False),
        "is_pull_request": obj.get("pull_request") is not None,
        "html_url": _url(obj, "html_url"),
        "created_at": _timestamp(obj, "created_at", True),
        "updated_at": _timestamp(obj, "updated_at", False),
        "closed_at": _timestamp(obj, "closed_at", False),
    }
    if check_text:
        _check_text(row)
    return row


def _loads(text: str) -> tuple[Any, bool]:
    """The parsed value, and whether orjson read it (then it holds no lone surrogate). The standard
    library reads what orjson refuses but JSON allows: lone surrogate escapes, numbers beyond 64 bits.

    Raises:
        ValueError: not JSON. RecursionError: nested too deeply for the standard library.
    """
    try:
        return orjson.loads(text), True
    except orjson.JSONDecodeError:
        return json.loads(text), False


def _why(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def _storable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes, so UTF-8 (Arrow, Spark) can hold it."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _read(path: str, limit: int) -> tuple[bytes | bytearray, str | None, str | None]:
    """The file's bytes, gunzipped for ``.gz`` (every member), at most ``limit`` of them, and the reject
    reason and detail for the rest when it could not be read to its end (None, None when it could).

    A gzip file cut short or corrupt keeps what came before the fault (``unreadable_file``); a file
    past ``limit`` keeps its first ``limit`` bytes and is never held whole (``file_too_large``).
    """
    try:
        with open(path, "rb") as handle:
            if path.endswith(".gz"):
                return _gunzip(handle, limit)
            data = handle.read(limit)
            if handle.read(1):
                return (
                    data,
                    "file_too_large",
                    f"the file passes ingest.max_file_bytes ({limit} bytes); the rest was not read",
                )
            return data, None, None
    except OSError as exc:
        return b"", "unreadable_file", f"{type(exc).__name__}: {exc}"


def _gunzip(handle: BinaryIO, limit: int) -> tuple[bytearray, str | None, str | None]:
    """Decompress every gzip member of ``handle``, reading and inflating in chunks up to ``limit`` bytes."""
    size = os.fstat(handle.fileno()).st_size
    out = bytearray()  # grown in place: no list of chunks beside a joined copy
    members = 0
    data = handle.read(GZIP_CHUNK)
    while data:
        if len(data) < 2:
            data += handle.read(GZIP_CHUNK)
        start, head = handle.tell() - len(data), data[:2]
        member = zlib.decompressobj(wbits=31)
        try:
            while True:  # in chunks: a corrupt block loses one chunk's output at most
                out += member.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    del out[limit:]
                    return (
                        out,
                        "file_too_large",
                        f"the file decompresses past ingest.max_file_bytes ({limit} bytes); the rest was not read",
                    )
                if member.eof:
                    data = member.unused_data
                    break
                data = handle.read(GZIP_CHUNK)
                if not data:
                    return out, "unreadable_file", "the gzip data ends before its end marker (file cut short)"
        except zlib.error as exc:
            if members and head != GZIP_MAGIC:  # what GNU gzip calls trailing garbage
                return (
                    out,
                    "unreadable_file",
                    f"{size - start} bytes after gzip member {members} are not gzip data ({exc}); the members before "
                    "them were read whole",
                )
            return out, "unreadable_file", f"corrupt gzip data: {exc}"
        members += 1
        while data[:1] == b"\0" or not data:  # gzip allows zero padding between members
            data = data.lstrip(b"\0") or handle.read(GZIP_CHUNK)
            if not data:
                break
    return out, None, None


def _lines(view: memoryview, offset: int) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, None) per line, or (number, text with bad bytes escaped, why) for a line
    that is not UTF-8. Decoded line by line: the file is never held as one text (a str of non-ASCII
    text takes up to four bytes per character)."""
    for number, raw in enumerate(io.BytesIO(view), start=1):
        try:
            yield number, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            yield (
                number,
                raw.decode("utf-8", "backslashreplace"),
                (
                    f"bytes {raw[exc.start : exc.end]!r} at byte offset {offset + exc.start} of the file"
                    f" (column {exc.start + 1} of the line) are not UTF-8 ({exc.reason})"
                ),
            )
        offset += len(raw)


def _records(path: str, max_record_bytes: int, max_file_bytes: int) -> Iterator[Record]:
    """Each record of a JSON Lines or JSON array file, as a :data:`Record`.

    A ``.jsonl``/``.ndjson`` file is JSON Lines; another is one JSON array when it starts with
    ``[`` and parses as one (or its first line does not parse alone). A file that cannot be
    read to its end yields its whole lines before the fault, then an ``unreadable_file`` (or
    ``file_too_large``) reject on the next line, with the text of the line the fault cut as
    its raw (a JSON array: one reject, on line 1). A file without records (empty, or only
    whitespace) yields one ``empty_file`` reject on line 1, so it leaves a trace.
    """
    data, fault, why = _read(path, max_file_bytes)
    lo = len(BOM) if data[:3] == BOM else 0
    first = _BLANK.match(data, lo).end()
    if data[first : first + 1] == b"[" and not path.endswith(LINES_SUFFIXES):
        yield from _array(data, lo, fault, why, max_record_bytes)
    else:
        yield from _json_lines(data, lo, fault, why, max_record_bytes)


def _json_lines(
    data: bytes | bytearray, lo: int, fault: str | None, why: str | None, max_record_bytes: int
) -> Iterator[Record]:
    """The records of JSON Lines ``data[lo:]``: blank lines skipped, the rest one record each."""
    hi = len(data) if fault is None else max(data.rfind(b"\n") + 1, lo)  # the line a fault cut is the fault's raw
    number = records = 0
    small = max_record_bytes // 4  # a line of no more characters has no more bytes than the limit
    for number, line, bad in _lines(memoryview(data)[lo:hi], lo):
        if bad is not None:
            yield number, line, None, "bad_encoding", bad, False
        elif line.isspace():
            continue
        elif len(line) > small and (size := len(line.encode("utf-8"))) > max_record_bytes:
            yield (
                number,
                line,
                None,
                "record_too_large",
                f"the line holds {size} bytes, more than ingest.max_record_bytes ({max_record_bytes})",
                False,
            )
        else:
            try:
                obj, strict = _loads(line)
            except (ValueError, RecursionError) as exc:
                yield number, line, None, "broken_json", _why(exc), False
            else:
                yield number, line, obj, None, None, not strict
        records += 1
    if fault is not None:
        partial = bytes(data[hi : hi + 4 * RAW_LIMIT]).decode("utf-8", "backslashreplace")
        yield number + 1, partial, None, fault, f"{why} (after {number} whole lines)", False
    elif not records:
        detail = "the file is empty" if len(data) == lo else f"the file holds only whitespace ({len(data) - lo} bytes)"
        yield 1, bytes(data[lo : lo + RAW_LIMIT]).decode("utf-8", "backslashreplace"), None, "empty_file", detail, False


_ARRAY_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.S)
_OPEN, _CLOSE, _QUOTE = frozenset(b"[{"), frozenset(b"]}"), ord('"')


def _item_spans(data: bytes | bytearray, start: int) -> tuple[list[tuple[int, int]], int, int | None]:
    """The byte spans of the items of the array opening at ``data[start]``, found by a scan over strings and brackets
    that builds no objects; the offset where the items stopped, and the offset past the closing ``]`` (None: not
    closed before the end of the file)."""
    spans: list[tuple[int, int]] = []
    depth, item = 0, start + 1
    for token in _ARRAY_TOKEN.finditer(data, start):
        at = token.start()
        byte = data[at]
        if byte == _QUOTE:
            continue
        if byte in _OPEN:
            depth += 1
        elif byte in _CLOSE:
            depth -= 1
            if depth == 0:
                if spans or _BLANK.match(data, item).end() < at:  # "[]" has no item
                    spans.append((item, at))
                return spans, at, at + 1
        elif depth == 1:  # a comma between two items
            spans.append((item, at))
            item = at + 1
    return spans, item, None


def _array(
    data: bytes | bytearray, lo: int, fault: str | None, why: str | None, max_record_bytes: int
) -> Iterator[Record]:
    """The items of a JSON array file, one at a time: each item's bytes are found by a scan, then decoded and parsed
    alone, so memory holds the file's bytes and one item, never the file as text or all its objects. Invalid UTF-8 or
    broken JSON rejects the item holding it; an array that is not closed rejects what follows its last whole item."""
    if fault is not None:
        yield 1, bytes(data[lo : lo + 4 * RAW_LIMIT]).decode("utf-8", "backslashreplace"), None, fault, why, False
        return
    spans, stopped, closed = _item_spans(data, _BLANK.match(data, lo).end())
    if closed is not None and _BLANK.match(data, closed).end() < len(data):  # JSON Lines whose first record is an array
        yield from _json_lines(data, lo, None, None, max_record_bytes)
        return
    view = memoryview(data)
    for index, (a, b) in enumerate(spans, start=1):
        yield _item(view[a:b], a, index, max_record_bytes)
    if closed is None:
        rest = bytes(view[stopped : stopped + RAW_LIMIT]).decode("utf-8", "backslashreplace").strip()
        yield (
            len(spans) + 1,
            rest,
            None,
            "broken_json",
            f"the array is not closed: the file ends {len(data) - stopped} bytes after item {len(spans)}",
            False,
        )


def _item(chunk: memoryview, offset: int, index: int, max_record_bytes: int) -> Record:
    """One array item from its bytes (``offset``: where they start in the file) as a :data:`Record`."""
    if len(chunk) > 4 * max_record_bytes:  # too large even with generous whitespace: not parsed at all
        return (
            index,
            bytes(chunk[:RAW_LIMIT]).decode("utf-8", "backslashreplace").strip(),
            None,
            "record_too_large",
            f"the item holds {len(chunk)} bytes, more than ingest.max_record_bytes ({max_record_bytes})",
            False,
        )
    try:
        text, invalid = str(chunk, "utf-8").strip(), None
    except UnicodeDecodeError as exc:
        text = str(chunk, "utf-8", "surrogateescape").strip()
        invalid = f"at byte offset {offset + exc.start} of the file: {exc.reason}"
    try:
        item, strict = _loads(text)
    except (ValueError, RecursionError) as exc:
        return (
            index,
            _storable(text[:RAW_LIMIT]),
            None,
            "broken_json",
            f"item {index} is not valid JSON: {_why(exc)}",
            False,
        )
    if invalid is not None:
        return (
            index,
            str(chunk, "utf-8", "backslashreplace").strip(),
            item,
            "bad_encoding",
            f"the item holds bytes that are not UTF-8 ({invalid})",
            False,
        )
    raw = orjson.dumps(item).decode() if strict else text  # compact when orjson can; else exactly as read
    if len(raw) > max_record_bytes // 4 and (size := len(raw.encode("utf-8", "surrogatepass"))) > max_record_bytes:
        return (
            index,
            raw,
            item,
            "record_too_large",
            f"the item holds {size} bytes as JSON, more than ingest.max_record_bytes ({max_record_bytes})",
            False,
        )
    return index, raw, item, None, None, not strict


def _reject(base: dict[str, Any], obj: Any, reason: str, detail: str, raw: str) -> dict[str, Any]:
    """A reject row: with repository and number when the record names storable ones; raw cut to 64 KiB."""
    row = {**base, "reason": reason, "detail": _storable(detail), "raw": _storable(raw[:RAW_LIMIT])[:RAW_LIMIT]}
    if isinstance(obj, dict):
        number = obj.get("number")
        if type(number) is int and -INT64 <= number < INT64:
            row["number"] = number
        try:
            repository = repository_of(obj)
        except RecordError:
            pass
        else:
            if not _SURROGATE.search(repository):
                row["repository"] = repository
    return row


def parse_file(
    path: str, max_record_bytes: int = MAX_RECORD_BYTES, max_file_bytes: int = MAX_FILE_BYTES
) -> list[dict[str, Any]]:
    """All rows of :func:`iter_rows` for one file."""
    return list(iter_rows(path, max_record_bytes, max_file_bytes))


def iter_rows(
    path: str, max_record_bytes: int = MAX_RECORD_BYTES, max_file_bytes: int = MAX_FILE_BYTES
) -> Iterator[dict[str, Any]]:
    """Parse one file into rows of :data:`PARSED`, one at a time: a bronze row, or a reject with reason and raw text.

    Total: whatever a record holds, it becomes one row, and should reading the file fail in a way
    not foreseen, the rows before the fault are kept and one ``unreadable_file`` reject follows them.
    """
    line = 0
    try:
        for line, text, obj, reason, detail, check_text in _records(path, max_record_bytes, max_file_bytes):
            base = {"source_file": path, "source_line": line}
            raw = text.rstrip("\n")
            if reason is None:
                try:
                    yield {**base, **parse_record(obj, check_text), "raw_json": raw}
                    continue
                except RecordError as err:
                    reason, detail = err.reason, err.detail
                except Exception as exc:  # a record must never abort the file
                    reason, detail = "bad_value", f"{type(exc).__name__}: {exc}"
            yield _reject(base, obj, reason, detail, raw)
    except Exception as exc:  # nor a file the ingest
        yield _reject(
            {"source_file": path, "source_line": line + 1},
            None,
            "unreadable_file",
            f"reading stopped here: {type(exc).__name__}: {exc}",
            "",
        )


def to_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Rows of :func:`parse_file` as one Arrow batch of :data:`PARSED`, built column by column
    (several times faster than ``RecordBatch.from_pylist`` on these rows)."""
    return pa.RecordBatch.from_arrays(
        [pa.array([r.get(f.name) for r in rows], type=f.type) for f in PARSED], schema=PARSED
    )


def _storable_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row``, or a ``bad_value`` reject naming the columns Arrow cannot build from it."""
    faults = {}
    for field in PARSED:
        try:
            pa.array([row.get(field.name)], type=field.type)
        except Exception as exc:  # any value Arrow refuses
            faults[field.name] = f"{field.name}: {type(exc).__name__}: {exc}"
    if not faults:
        return row
    base = {"source_file": row["source_file"], "source_line": row["source_line"]}
    base.update({k: row.get(k) for k in ("repository", "number") if k not in faults})
    return {
        **base,
        "reason": "bad_value",
        "detail": _storable("; ".join(faults.values())),
        "raw": _storable(str(row.get("raw_json") or row.get("raw") or "")[:RAW_LIMIT])[:RAW_LIMIT],
    }


def to_batches(rows: Iterable[dict[str, Any]]) -> Iterator[pa.RecordBatch]:
    """Batches of :data:`PARSED` of at most :data:`BATCH_ROWS` rows, taken from ``rows`` as they come.
    :func:`parse_record` makes every value storable; should a batch still fail, its rows are checked one
    by one and those Arrow refuses become ``bad_value`` rejects."""
    rows = iter(rows)
    while chunk := list(itertools.islice(rows, BATCH_ROWS)):
        try:
            yield to_batch(chunk)
        except Exception:  # never lose the other rows of the batch
            yield to_batch([_storable_row(row) for row in chunk])
