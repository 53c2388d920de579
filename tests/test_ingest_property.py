"""Issue 15, as a property: files mixing random valid issues and broken records of every kind ingest without
failing, and every non-blank input line ends up exactly once, in ``bronze_issues`` or ``bronze_rejects``."""

from __future__ import annotations

import gzip
import itertools
import json
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from issuerisk.issue_files import parse_file, to_batches
from issuerisk.jobs import ingest
from tests.conftest import make_ctx
from tests.github_objects import issue

REPO = "acme/vision"
MAX_RECORD_BYTES = 4096  # a valid record below stays under it; a too_large one passes it
_examples = itertools.count()

text = st.text(max_size=30)
dates = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
fields = st.fixed_dictionaries(
    {
        "title": text,
        "body": st.none() | text,
        "labels": st.lists(st.text(max_size=10), max_size=3),
        "login": text,
        "created": dates.map(lambda d: d.isoformat().replace("+00:00", "Z")),
        "closed": st.none() | dates.map(datetime.isoformat),
    }
)
not_json = st.text(min_size=1, max_size=40).filter(
    lambda t: "\n" not in t and not t.isspace() and not t.startswith("\ufeff") and not _parses(t)
)
non_objects = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
)

# (kind, fields, argument): what each line will be; the number is its position, so every accepted line is its own issue.
records = st.one_of(
    st.tuples(st.just("valid"), fields, st.none()),
    st.tuples(
        st.just("bad_text"),
        fields,
        st.tuples(st.sampled_from(["title", "body", "login", "label"]), st.integers(0xD800, 0xDFFF)),
    ),
    st.tuples(
        st.just("out_of_range"),
        fields,
        st.one_of(
            st.tuples(
                st.sampled_from(["id", "number", "comments"]),
                st.integers(1 << 63, 1 << 80) | st.integers(-(1 << 80), -(1 << 63) - 1),
            ),
            st.tuples(
                st.sampled_from(["created_at", "closed_at"]),
                st.sampled_from(
                    [
                        "0001-01-01T00:00:00+01:00",
                        "9999-12-31T23:30:00-01:00",
                        "0001-01-01T00:00:00Z",
                        "9999-12-31T00:00:00Z",
                    ]
                ),
            ),
        ),
    ),
    st.tuples(st.just("wrong_type"), fields, st.sampled_from(["label_name", "login", "title", "id"])),
    st.tuples(st.just("bad_date"), fields, st.sampled_from(["yesterday", "2021-13-45T00:00:00Z", "31/02/2021", ""])),
    st.tuples(
        st.just("bad_url"),
        fields,
        st.sampled_from(
            [
                "javascript:alert(document.domain)",
                "JAVASCRIPT:alert(1)",
                "data:text/html,x",
                "/a/b/issues/1",
                "//evil.example/x",
                "ftp://x/y",
                " https://x",
            ]
        ),
    ),
    st.tuples(st.just("missing_field"), fields, st.sampled_from(["title", "id", "number", "created_at"])),
    st.tuples(st.just("broken_json"), st.none(), not_json | st.integers(1100, 4000).map(lambda n: "[" * n)),
    st.tuples(st.just("not_an_object"), st.none(), non_objects),
    st.tuples(
        st.just("bad_encoding"),
        fields,
        st.sampled_from([b"\xff", b"\xc3", b"\xe9x", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]),
    ),
    st.tuples(st.just("record_too_large"), fields, st.integers(MAX_RECORD_BYTES, 3 * MAX_RECORD_BYTES)),
    st.tuples(st.just("blank"), st.none(), st.sampled_from(["", " ", "\t \r"])),
)
files = st.lists(
    st.tuples(st.lists(records, max_size=8), st.booleans(), st.booleans(), st.sampled_from(["\n", "\r\n"])),
    min_size=1,
    max_size=3,
)  # (records, gzip, byte order mark, line end)


def _parses(t: str) -> bool:
    try:
        json.loads(t)
    except (ValueError, RecursionError):
        return False
    return True


def make(kind: str, f: dict | None, arg, number: int, repo: str = REPO) -> tuple[bytes, str | None]:
    """The line's bytes and the reject reason it must get (None: accepted; "blank": no row)."""
    if kind == "broken_json":
        return arg.encode(), kind
    if kind == "not_an_object":
        return json.dumps(arg).encode(), kind
    if kind == "blank":
        return arg.encode(), kind
    obj = issue(
        repo,
        number,
        f["title"],
        f["body"],
        created=f["created"],
        closed=f["closed"],
        login=f["login"],
        labels=tuple(f["labels"]),
        state="closed" if f["closed"] else "open",
    )
    if kind == "bad_text":
        where, code = arg
        bad = f"<{chr(code)}>"
        if where == "login":
            obj["user"]["login"] = bad
        elif where == "label":
            obj["labels"] = [{"name": bad}]
        else:
            obj[where] = bad
    elif kind == "out_of_range":
        obj[arg[0]] = arg[1]
    elif kind == "wrong_type":
        if arg == "label_name":
            obj["labels"] = [{"name": 5}]
        elif arg == "login":
            obj["user"]["login"] = 5
        else:
            obj[arg] = [obj[arg]]
    elif kind == "bad_date":
        obj["created_at"] = arg
    elif kind == "bad_url":
        obj["html_url"] = arg
    elif kind == "missing_field":
        del obj[arg]
    elif kind == "record_too_large":
        obj["body"] = "x" * arg
    data = json.dumps(obj).encode()
    if kind == "bad_encoding":
        obj["title"] = "@@"
        data = json.dumps(obj).encode().replace(b'"title": "@@"', b'"title": "' + arg + b'"')
    return data, None if kind == "valid" else kind


def write(folder: Path, spec, repo: str = REPO) -> dict[tuple[str, int], str | None]:
    """Write the files; return the row each (file, line) must produce, and its reason."""
    expected = {}
    for index, (lines, compressed, bom, end) in enumerate(spec):
        path = folder / f"f{index}.jsonl{'.gz' if compressed else ''}"
        chunks, rows = [], {}
        for number, (kind, f, arg) in enumerate(lines, start=1):
            data, reason = make(kind, f, arg, index * 1000 + number, repo)
            chunks.append(data)
            if reason != "blank":
                rows[(str(path), number)] = reason
        data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(c + end.encode() for c in chunks)
        path.write_bytes(gzip.compress(data) if compressed else data)
        expected.update(rows or {(str(path), 1): "empty_file"})
    return expected


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(spec=files)
def test_parse_file_gives_every_line_one_row_with_its_reason(spec):
    with tempfile.TemporaryDirectory() as folder:
        expected = write(Path(folder), spec)
        got = {}
        for path in sorted({p for p, _ in expected}):
            rows = parse_file(path, max_record_bytes=MAX_RECORD_BYTES)
            batch = [b for b in to_batches(rows)]
            assert sum(b.num_rows for b in batch) == len(rows)
            keys = [(r["source_file"], r["source_line"]) for r in rows]
            assert len(keys) == len(set(keys))
            got.update({(r["source_file"], r["source_line"]): r.get("reason") for r in rows})
        assert got == expected


@pytest.fixture
def limited_ctx(cfg, spark):
    """One context (and database) for every example; each example's repository and folder are its own."""
    return make_ctx(cfg.updated("ingest", max_record_bytes=MAX_RECORD_BYTES), spark)


@pytest.mark.slow
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(spec=files)
def test_ingest_puts_every_line_exactly_once_in_bronze_or_rejects(limited_ctx, spec):
    from pyspark.sql import functions as F

    ctx, repo = limited_ctx, f"acme/example-{next(_examples)}"
    with tempfile.TemporaryDirectory() as folder:
        expected = write(Path(folder), spec, repo)
        result = ingest.run(ctx, [folder])
        mine = F.col("source_file").startswith(folder + "/")
        bronze = [
            (r["source_file"], r["source_line"], r["repository"])
            for r in ctx.lake.spark.read("bronze_issues")
            .where(mine)
            .select("source_file", "source_line", "repository")
            .collect()
        ]
        rejects = [
            (r["source_file"], r["source_line"], r["reason"])
            for r in ctx.lake.spark.read("bronze_rejects")
            .where(mine)
            .select("source_file", "source_line", "reason")
            .collect()
        ]
    landed = Counter((f, n) for f, n, _ in bronze) + Counter((f, n) for f, n, _ in rejects)
    assert landed == Counter(expected.keys())  # every line once, nothing else
    assert {(f, n): None for f, n, _ in bronze} | {(f, n): r for f, n, r in rejects} == expected
    assert {r for _, _, r in bronze} <= {repo}
    assert result["files"] == len({f for f, _ in expected})
    assert result["records"] == len(expected) == result["accepted"] + result["rejected"]
    assert result["accepted"] == len(bronze) == result["new_issues"]
    assert result["rejects_by_reason"] == dict(Counter(r for r in expected.values() if r is not None))
