"""Issue 15: one record never aborts an ingest. Each bad record becomes one reject (file, line, reason, detail),
every other record lands, and every value that reaches a batch is one Arrow and Spark can store."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pyarrow as pa
import pytest

from issuerisk import issue_files
from issuerisk.issue_files import PARSED, IngestError, parse_file, to_batch, to_batches
from issuerisk.jobs import ingest
from tests.conftest import make_ctx
from tests.github_objects import issue

REPO = "acme/vision"


def line(obj) -> str:
    return json.dumps(obj)  # ensure_ascii: a lone surrogate is written as the escape "\ud800", as JSON allows


def good(number: int = 1, body: str = "body", **extra) -> str:
    return line(issue(REPO, number, f"issue {number}", body, **extra))


def write(path, lines: list[str | bytes], prefix: bytes = b""):
    data = prefix + b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return str(path)


def outcome(rows) -> list[tuple[int, str | None]]:
    return [(r["source_line"], r.get("reason")) for r in rows]


def stored(rows) -> pa.RecordBatch:
    """The rows as the parse task hands them to Spark: this must not raise."""
    batch = to_batch(rows)
    assert batch.num_rows == len(rows)
    return batch


def with_(**fields) -> str:
    return line({**issue(REPO, 2, "t"), **fields})


# ---- each case of the issue: the bad record is rejected with a precise reason, the good one lands ----------------


@pytest.mark.parametrize(
    "bad, reason, named",
    [
        (with_(title="x\ud800y"), "bad_text", "title holds a lone surrogate \\ud800 at character 1"),
        (with_(body="\udfff"), "bad_text", "body holds a lone surrogate \\udfff"),
        (with_(labels=[{"name": "ok"}, {"name": "b\udc80d"}]), "bad_text", "labels[1] holds a lone surrogate"),
        (with_(user={"login": "\ud83d", "type": "User"}), "bad_text", "user_login holds a lone surrogate"),
        (
            with_(repository_url="https://api.github.com/repos/a\ud800/b"),
            "bad_text",
            "repository holds a lone surrogate",
        ),
        (with_(id=2**63), "out_of_range", "id=9223372036854775808 is outside the 64-bit integer range"),
        (with_(id=-(2**63) - 1), "out_of_range", "id=-9.223372036854776e+18 is outside"),
        (with_(number=10**30), "out_of_range", "number=1e+30 is outside"),
        (with_(comments=10**400), "out_of_range", "comments=10000000000000000000... (401 digits) is outside"),
        (with_(labels=[{"name": 5}]), "wrong_type", "labels[0].name must be str, got int"),
        (with_(labels=[7]), "wrong_type", "labels[0] must be str, got int"),
        (with_(user={"login": 42, "type": "User"}), "wrong_type", "user.login must be str, got int"),
        (with_(user={"login": "a", "type": ["Bot"]}), "wrong_type", "user.type must be str, got list"),
        (
            with_(created_at="0001-01-01T00:00:00+01:00"),
            "out_of_range",
            "created_at='0001-01-01T00:00:00+01:00' is outside 0001-01-03..9999-12-30 in UTC",
        ),
        (
            with_(closed_at="9999-12-31T23:30:00-01:00"),
            "out_of_range",
            "closed_at='9999-12-31T23:30:00-01:00' is outside",
        ),
        (with_(created_at="0001-01-01T00:00:00Z"), "out_of_range", "created_at='0001-01-01T00:00:00Z' is outside"),
        (
            with_(created_at="0001-01-02T23:59:59.999999"),
            "out_of_range",
            "created_at='0001-01-02T23:59:59.999999' is outside",
        ),
        (
            with_(updated_at="9999-12-31T00:00:00+00:00"),
            "out_of_range",
            "updated_at='9999-12-31T00:00:00+00:00' is outside",
        ),
        (
            with_(updated_at="0000-12-31T00:00:00Z"),
            "bad_date",
            "updated_at='0000-12-31T00:00:00Z' is not an ISO-8601 date",
        ),
        (with_(created_at=1614592800), "wrong_type", "created_at must be an ISO-8601 string, got int"),
        (
            with_(html_url="javascript:alert(document.domain)"),
            "bad_url",
            "html_url='javascript:alert(document.domain)' is not an absolute http(s) URL",
        ),
        (with_(html_url="data:text/html,<script>alert(1)</script>"), "bad_url", "html_url='data:text/html"),
        (with_(html_url="//evil.example/x"), "bad_url", "html_url='//evil.example/x'"),
        (with_(html_url="/acme/vision/issues/2"), "bad_url", "html_url='/acme/vision/issues/2'"),
        (with_(html_url=" javascript:alert(1)"), "bad_url", "html_url=' javascript:alert(1)'"),
        (with_(html_url="https:///nohost"), "bad_url", "html_url='https:///nohost'"),
        (with_(html_url=["https://github.com/x"]), "wrong_type", "html_url must be str, got list"),
        ("[" * 100_000, "broken_json", "nested too deeply"),
        ('"\\ud800"', "not_an_object", "got str"),
        ('{"number": NaN}', "missing_field", "repository_url"),
    ],
)
def test_one_bad_record_is_one_reject_and_the_good_one_lands(tmp_path, bad, reason, named):
    rows = parse_file(write(tmp_path / "mixed.jsonl", [good(1), bad, good(3)]))
    assert outcome(rows) == [(1, None), (2, reason), (3, None)]
    assert named in rows[1]["detail"]
    assert rows[1]["raw"] == bad[: issue_files.RAW_LIMIT]
    stored(rows)


def test_values_at_the_edges_of_the_spark_types_are_accepted(tmp_path):
    edge = [
        with_(id=2**63 - 1, number=2, comments=0),
        line({**issue(REPO, 3, "t"), "id": -(2**63)}),
        line(issue(REPO, 4, "t", created="0001-01-03T00:00:00Z", updated="9999-12-30T23:59:59.999999+00:00")),
        line(issue(REPO, 5, "t", created="0001-01-02T23:59:00-00:59")),
        line(issue(REPO, 6, "t", html_url="HTTP://GitHub.example/acme/vision/issues/6")),
        line(issue(REPO, 7, "t", labels=("bug",)) | {"labels": [{"name": None}, "plain"]}),
        line(issue(REPO, 8, "t", milestone={"title": "\ud800 in a field bronze does not keep"})),
        line(issue(REPO, 9, "emoji \U0001f600 as a surrogate pair escape")),
    ]
    rows = parse_file(write(tmp_path / "edge.jsonl", edge))
    assert outcome(rows) == [(n, None) for n in range(1, 9)]
    assert [r["raw_json"] for r in rows] == edge  # exactly as read, escapes and all
    assert rows[0]["id"] == 2**63 - 1 and rows[1]["id"] == -(2**63)
    assert rows[2]["created_at"].isoformat() == "0001-01-03T00:00:00+00:00"
    assert rows[3]["created_at"].isoformat() == "0001-01-03T00:58:00+00:00"
    assert rows[5]["labels"] == [None, "plain"]
    assert rows[7]["title"] == "emoji \U0001f600 as a surrogate pair escape"
    stored(rows)


def test_rejects_keep_storable_repository_and_number(tmp_path):
    rows = parse_file(
        write(
            tmp_path / "keys.jsonl",
            [
                with_(title="\ud800"),
                line({**issue(REPO, 3, "t"), "number": 2**64, "title": None}),
                line(
                    {
                        **issue(REPO, 4, "t"),
                        "repository_url": "https://api.github.com/repos/\udc00/x",
                        "html_url": None,
                        "id": "x",
                    }
                ),
            ],
        )
    )
    assert [(r["reason"], r.get("repository"), r.get("number")) for r in rows] == [
        ("bad_text", REPO, 2),
        ("out_of_range", REPO, None),
        ("wrong_type", None, 4),
    ]
    stored(rows)


# ---- a JSON array, gzip or not: the same checks per item -----------------------------------------------------------


def test_array_items_are_checked_like_lines(tmp_path):
    items = [
        issue(REPO, 1, "one"),
        {**issue(REPO, 2, "t"), "title": "\ud800"},
        {**issue(REPO, 3, "t"), "id": 2**70},
        {**issue(REPO, 4, "t"), "html_url": "javascript:alert(1)"},
        issue(REPO, 5, "five"),
    ]
    path = tmp_path / "a.json.gz"
    path.write_bytes(gzip.compress(json.dumps(items).encode()))
    rows = parse_file(str(path))
    assert outcome(rows) == [(1, None), (2, "bad_text"), (3, "out_of_range"), (4, "bad_url"), (5, None)]
    assert rows[1]["raw"] == json.dumps(items[1]) and "\\ud800" in rows[1]["raw"]  # escaped, so storable
    assert json.loads(rows[2]["raw"])["id"] == 2**70
    stored(rows)


def test_an_array_is_read_item_by_item_so_one_fault_loses_only_its_item(tmp_path):
    """Issue 25.10: the items are found by a scan and parsed one at a time; a broken item, strings holding brackets
    and commas, indentation and an array cut before its end lose nothing but what is broken."""
    items = [issue(REPO, 1, "a [tricky], {title}"), issue(REPO, 2, 'quote \\" and ] inside'), issue(REPO, 3, "three")]
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(items, indent=2))
    rows = parse_file(str(pretty))
    assert outcome(rows) == [(1, None), (2, None), (3, None)] and [r["title"] for r in rows] == [
        i["title"] for i in items
    ]
    assert json.loads(rows[0]["raw_json"]) == items[0] and "\n" not in rows[0]["raw_json"]  # stored compact
    broken = tmp_path / "broken.json"
    broken.write_text(
        "[" + ", ".join([json.dumps(items[0]), '{"number": 2, "title": oops}', json.dumps(items[2])]) + "]"
    )
    rows = parse_file(str(broken))
    assert (
        outcome(rows) == [(1, None), (2, "broken_json"), (3, None)] and rows[1]["raw"] == '{"number": 2, "title": oops}'
    )
    cut = tmp_path / "cut.json"
    whole = json.dumps(items)
    cut.write_text(whole[: whole.index(json.dumps(items[2])) + 20])
    rows = parse_file(str(cut))
    assert outcome(rows) == [(1, None), (2, None), (3, "broken_json")]
    assert (
        rows[2]["detail"].startswith("the array is not closed: the file ends ")
        and rows[2]["raw"] == json.dumps(items[2])[:20]
    )
    assert parse_file(write(tmp_path / "empty.json", ["[ ]"])) == []


def test_a_jsonl_file_whose_first_record_is_an_array_is_still_json_lines(tmp_path):
    for name in ("lines.jsonl", "lines.json"):  # .jsonl by its name; .json because its first line parses alone
        rows = parse_file(write(tmp_path / name, ["[1, 2]", good(2), "[broken", good(4)]))
        assert outcome(rows) == [(1, "not_an_object"), (2, None), (3, "broken_json"), (4, None)]
    rows = parse_file(write(tmp_path / "broken.jsonl", ["[broken", good(2)]))
    assert outcome(rows) == [(1, "broken_json"), (2, None)]


# ---- encodings: a byte order mark is accepted, invalid UTF-8 is rejected per record --------------------------------


@pytest.mark.parametrize("name", ["bom.jsonl", "bom.jsonl.gz", "bom.json", "bom.json.gz"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, name):
    if ".jsonl" in name:
        path = write(tmp_path / name, [good(1), good(2)], prefix=b"\xef\xbb\xbf")
    else:  # a JSON array
        path = write(
            tmp_path / name, [json.dumps([issue(REPO, 1, "one"), issue(REPO, 2, "two")])], prefix=b"\xef\xbb\xbf"
        )
    rows = parse_file(path)
    assert outcome(rows) == [(1, None), (2, None)]
    assert json.loads(rows[0]["raw_json"])["number"] == 1


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_invalid_utf8_rejects_that_line_only(tmp_path, name):
    first, third = good(1), good(3)
    bad = line(issue(REPO, 2, "caf\u00e9")).encode().replace(b"caf\\u00e9", b"caf\xe9")  # Latin-1, not UTF-8
    rows = parse_file(write(tmp_path / name, [first, bad, third, "caf\u00e9 ok"]))
    assert outcome(rows) == [(1, None), (2, "bad_encoding"), (3, None), (4, "broken_json")]
    column = bad.index(b"\xe9")
    offset = len(first) + 1 + column
    assert rows[1]["detail"] == (
        f"bytes b'\\xe9' at byte offset {offset} of the file (column {column + 1} of the line)"
        " are not UTF-8 (invalid continuation byte)"
    )
    assert "caf\\xe9" in rows[1]["raw"]  # the bad byte escaped, so the reject is storable
    assert [r["raw_json"] for r in rows if r.get("reason") is None] == [first, third]  # exactly as read
    stored(rows)


def test_invalid_utf8_in_an_array_rejects_the_items_holding_it(tmp_path):
    text = json.dumps(
        [issue(REPO, 1, "one"), issue(REPO, 2, "caf\u00e9", milestone={"t": "x"}), issue(REPO, 3, "three")]
    )
    data = text.encode().replace(b"caf\\u00e9", b"caf\xe9")
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    rows = parse_file(str(path))
    assert outcome(rows) == [(1, None), (2, "bad_encoding"), (3, None)]
    offset = data.index(b"\xe9")
    assert (
        rows[1]["detail"]
        == f"the item holds bytes that are not UTF-8 (at byte offset {offset} of the file: invalid continuation byte)"
    )
    assert rows[1]["number"] == 2
    stored(rows)


# ---- empty files leave a trace ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, data, detail",
    [
        ("empty.jsonl", b"", "the file is empty"),
        ("blank.jsonl", b"\n  \n\t\n", "the file holds only whitespace (6 bytes)"),
        ("bom.jsonl", b"\xef\xbb\xbf", "the file is empty"),
        ("nbsp.jsonl", "\u00a0\n".encode(), "the file holds only whitespace (3 bytes)"),
        ("empty.jsonl.gz", gzip.compress(b""), "the file is empty"),
        ("zero.jsonl.gz", b"", "the file is empty"),
    ],
)
def test_an_empty_file_is_one_empty_file_reject(tmp_path, name, data, detail):
    path = tmp_path / name
    path.write_bytes(data)
    rows = parse_file(str(path))
    assert [(r["source_line"], r["reason"], r["detail"]) for r in rows] == [(1, "empty_file", detail)]
    stored(rows)


# ---- size limits: a record or a file past its limit is rejected, never held whole ---------------------------------


def test_a_record_over_max_record_bytes_is_rejected(tmp_path):
    big = good(2, body="x" * 2000)
    wide = json.dumps(issue(REPO, 3, "t", "\U0001f600" * 150), ensure_ascii=False)
    assert len(wide) + 1 <= 1024 < len(wide.encode()) + 1  # few enough characters, too many bytes
    rows = parse_file(write(tmp_path / "big.jsonl", [good(1), big, wide, good(4)]), max_record_bytes=1024)
    assert outcome(rows) == [(1, None), (2, "record_too_large"), (3, "record_too_large"), (4, None)]
    assert rows[1]["detail"] == f"the line holds {len(big) + 1} bytes, more than ingest.max_record_bytes (1024)"
    assert rows[1]["raw"] == big
    huge = good(2, body="y" * 200_000)
    rows = parse_file(write(tmp_path / "huge.jsonl", [huge]), max_record_bytes=1024)
    assert rows[0]["reason"] == "record_too_large" and rows[0]["raw"] == huge[:65536]
    array = tmp_path / "big.json"
    array.write_text(json.dumps([issue(REPO, 1, "one"), issue(REPO, 2, "two", "z" * 2000)]))
    rows = parse_file(str(array), max_record_bytes=1024)
    assert [(r["source_line"], r.get("reason"), r.get("number")) for r in rows] == [
        (1, None, 1),
        (2, "record_too_large", 2),
    ]


@pytest.mark.parametrize("name", ["big.jsonl", "big.jsonl.gz"])
def test_a_file_over_max_file_bytes_keeps_its_whole_lines_and_rejects_the_rest(tmp_path, name):
    lines = [good(n, body="b" * 900) for n in range(1, 101)]  # about 100 KB
    limit = 65536
    rows = parse_file(write(tmp_path / name, lines), max_file_bytes=limit)
    sizes, kept = 0, 0
    while sizes + len(lines[kept]) + 1 <= limit:
        sizes += len(lines[kept]) + 1
        kept += 1
    assert outcome(rows) == [(n, None) for n in range(1, kept + 1)] + [(kept + 1, "file_too_large")]
    assert rows[-1]["detail"].startswith("the file ") and f"ingest.max_file_bytes ({limit} bytes)" in rows[-1]["detail"]
    assert rows[-1]["detail"].endswith(f"(after {kept} whole lines)")
    assert lines[kept].startswith(rows[-1]["raw"]) and rows[-1]["raw"]
    array = tmp_path / "big.json"
    array.write_text(json.dumps([json.loads(x) for x in lines]))
    assert outcome(parse_file(str(array), max_file_bytes=limit)) == [(1, "file_too_large")]


def test_a_gzip_bomb_is_never_decompressed_past_the_limit(tmp_path):
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        for _ in range(64):
            fh.write(b" " * (1 << 20))  # 64 MiB of blanks, 64 KB compressed
    limit = 1 << 20
    tracemalloc.start()
    try:
        data, reason, _ = issue_files._read(str(bomb), limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (len(data), reason) == (limit, "file_too_large")
    assert peak < 4 * limit  # the limit plus a chunk or two, never the whole file
    assert outcome(parse_file(str(bomb), max_file_bytes=limit)) == [(1, "file_too_large")]


# ---- the last resort: a batch Arrow refuses is rebuilt row by row -----------------------------------------------


def test_a_batch_arrow_refuses_keeps_its_other_rows(tmp_path):
    rows = parse_file(write(tmp_path / "ok.jsonl", [good(1), good(2), good(3)]))
    rows[1] = {**rows[1], "id": 2**64}  # values parse_record would never let through
    rows[2] = {**rows[2], "title": "\ud800", "labels": [5]}
    batches = list(to_batches(rows))
    assert len(batches) == 1 and batches[0].schema == PARSED
    out = batches[0].to_pylist()
    assert [(r["source_line"], r["reason"], r["number"], r["id"]) for r in out] == [
        (1, None, 1, rows[0]["id"]),
        (2, "bad_value", 2, None),
        (3, "bad_value", 3, None),
    ]
    assert out[1]["detail"].startswith("id: OverflowError") and json.loads(out[1]["raw"])["number"] == 2
    assert out[2]["detail"].startswith("title: ") and "; labels: " in out[2]["detail"]


def test_an_unexpected_error_in_one_record_is_a_bad_value_reject(tmp_path, monkeypatch):
    calls = []

    def flaky(obj, check_text=True):
        calls.append(obj["number"])
        if obj["number"] == 2:
            raise KeyError("boom")
        return real(obj, check_text)

    real = issue_files.parse_record
    monkeypatch.setattr(issue_files, "parse_record", flaky)
    rows = parse_file(write(tmp_path / "x.jsonl", [good(1), good(2), good(3)]))
    assert [(r["source_line"], r.get("reason"), r.get("detail")) for r in rows] == [
        (1, None, None),
        (2, "bad_value", "KeyError: 'boom'"),
        (3, None, None),
    ]


def test_an_unforeseen_fault_reading_a_file_keeps_the_rows_before_it(tmp_path, monkeypatch):
    real, calls = issue_files._loads, []

    def failing(text):
        calls.append(text)
        if len(calls) == 2:
            raise MemoryError("no room")
        return real(text)

    monkeypatch.setattr(issue_files, "_loads", failing)
    rows = parse_file(write(tmp_path / "x.jsonl", [good(1), good(2), good(3)]))
    assert [(r["source_line"], r.get("reason"), r.get("detail")) for r in rows] == [
        (1, None, None),
        (2, "unreadable_file", "reading stopped here: MemoryError: no room"),
    ]


# ---- a missing path is refused before Spark starts ----------------------------------------------------------------


def test_a_missing_path_is_refused_before_spark_starts(cfg, tmp_path):
    ctx = make_ctx(cfg)
    present = write(tmp_path / "ok.jsonl", [good(1)])
    with pytest.raises(IngestError, match=r"input path '.*/missing\.jsonl' does not exist"):
        ingest.run(ctx, [present, str(tmp_path / "missing.jsonl")])
    assert ctx.lake.spark_started is False


# ---- on Spark + Delta: the issue's file ingests, rejects are stored, a rerun commits nothing -----------------------


@pytest.mark.slow
def test_ingest_of_the_issues_bad_records_succeeds_and_reruns_commit_nothing(cfg, spark, tmp_path):
    ctx = make_ctx(cfg.updated("ingest", max_file_bytes=65536), spark)
    records = [
        good(1),
        with_(title="\ud800", number=2),
        line({**issue(REPO, 3, "t"), "id": 2**63}),
        line({**issue(REPO, 4, "t"), "labels": [{"name": 5}]}),
        line({**issue(REPO, 5, "t"), "user": {"login": 5}}),
        line(issue(REPO, 6, "t", created="0001-01-01T00:00:00+01:00")),
        line(issue(REPO, 7, "t", html_url="javascript:alert(document.domain)")),
        line(issue(REPO, 8, "year one", created="0001-01-03T00:00:00Z", updated="9999-12-30T23:59:59Z")),
        line(issue(REPO, 9, "big ids", id=2**63 - 1)),
    ]
    write(tmp_path / "mixed.jsonl", records, prefix=b"\xef\xbb\xbf")
    write(
        tmp_path / "latin.jsonl.gz",
        [good(10), line(issue(REPO, 11, "caf\u00e9")).encode().replace(b"\\u00e9", b"\xe9")],
    )
    write(tmp_path / "empty.jsonl", [])
    cut = tmp_path / "big.jsonl"
    cut.write_text("".join(good(n, body="b" * 900) + "\n" for n in range(20, 120)))

    first = ingest.run(ctx, [str(tmp_path)])
    kept = sum(1 for r in parse_file(str(cut), max_file_bytes=65536) if r.get("reason") is None)
    assert first["files"] == 4 and first["records"] == first["accepted"] + first["rejected"]
    assert first["rejects_by_reason"] == {
        "bad_text": 1,
        "out_of_range": 2,
        "wrong_type": 2,
        "bad_url": 1,
        "bad_encoding": 1,
        "empty_file": 1,
        "file_too_large": 1,
    }
    assert first["accepted"] == 3 + 1 + kept
    rejects = {
        (r["source_file"].rsplit("/", 1)[1], r["source_line"]): (r["reason"], r["repository"], r["number"])
        for r in ctx.lake.spark.read("bronze_rejects").collect()
    }
    assert rejects == {
        ("mixed.jsonl", 2): ("bad_text", REPO, 2),
        ("mixed.jsonl", 3): ("out_of_range", REPO, 3),
        ("mixed.jsonl", 4): ("wrong_type", REPO, 4),
        ("mixed.jsonl", 5): ("wrong_type", REPO, 5),
        ("mixed.jsonl", 6): ("out_of_range", REPO, 6),
        ("mixed.jsonl", 7): ("bad_url", REPO, 7),
        ("latin.jsonl.gz", 2): ("bad_encoding", None, None),
        ("empty.jsonl", 1): ("empty_file", None, None),
        ("big.jsonl", kept + 1): ("file_too_large", None, None),
    }
    bronze = {r["number"]: r for r in ctx.lake.spark.read("bronze_issues").collect()}
    assert sorted(bronze) == [1, 8, 9, 10] + list(range(20, 20 + kept))
    assert bronze[8]["created_at"].isoformat().startswith("0001-01-03T00:00:00")
    assert bronze[8]["updated_at"].year == 9999 and bronze[9]["id"] == 2**63 - 1
    assert bronze[1]["raw_json"] == records[0]  # the BOM is not part of the first record

    versions = [ctx.lake.spark.version(name) for name in ("bronze_issues", "bronze_rejects")]
    again = ingest.run(ctx, [str(tmp_path)])
    assert (again["new_issues"], again["rejected"]) == (0, first["rejected"])
    assert [ctx.lake.spark.version(name) for name in ("bronze_issues", "bronze_rejects")] == versions
