"""Ingest on real Spark + Delta: typed bronze rows, every reject reason, idempotent MERGE, newest wins."""

from __future__ import annotations

import gzip
import json

import pytest

from issuerisk import issue_files
from issuerisk.issue_files import IngestError, RecordError, find_files, parse_file, parse_record
from issuerisk.jobs import ingest
from tests.github_objects import issue

REPO = "acme/vision"


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# ---- pure parsing, no Spark -------------------------------------------------------------------


def test_parse_record_reads_the_fields_we_use():
    row = parse_record(
        issue(REPO, 7, "CUDA OOM", "trace", state="closed", closed="2021-03-02T10:00:00Z", labels=("bug",))
    )
    assert row["repository"] == REPO and row["number"] == 7 and row["labels"] == ["bug"]
    assert row["closed_at"].isoformat() == "2021-03-02T10:00:00+00:00"
    assert row["is_pull_request"] is False


def test_parse_record_repository_from_enterprise_url():
    obj = issue(REPO, 1, "t", repository_url="https://ghe.example.com/api/v3/repos/team/model")
    assert parse_record(obj)["repository"] == "team/model"


@pytest.mark.parametrize(
    "mutate, reason, field",
    [
        (lambda o: o.pop("title"), "missing_field", "title"),
        (lambda o: o.pop("id"), "missing_field", "id"),
        (lambda o: o.pop("number"), "missing_field", "number"),
        (lambda o: o.pop("created_at"), "missing_field", "created_at"),
        (lambda o: o.update(number="7"), "wrong_type", "number"),
        (lambda o: o.update(title=["x"]), "wrong_type", "title"),
        (lambda o: o.update(created_at="yesterday"), "bad_date", "created_at"),
        (lambda o: o.update(closed_at="2021-13-45T00:00:00Z"), "bad_date", "closed_at"),
        (lambda o: (o.pop("repository_url"), o.pop("html_url")), "missing_field", "repository_url"),
    ],
)
def test_parse_record_rejects_with_reason(mutate, reason, field):
    obj = issue(REPO, 7, "t")
    mutate(obj)
    with pytest.raises(RecordError) as err:
        parse_record(obj)
    assert err.value.reason == reason and field in err.value.detail


def test_parse_file_reads_arrays_gzip_and_keeps_bad_lines(tmp_path):
    array = tmp_path / "a.json.gz"
    with gzip.open(array, "wt") as fh:
        json.dump([issue(REPO, 1, "one"), issue(REPO, 2, "two")], fh)
    rows = parse_file(str(array))
    assert [(r["number"], r["source_line"], r.get("reason")) for r in rows] == [(1, 1, None), (2, 2, None)]
    lines = write_jsonl(tmp_path / "b.jsonl", [issue(REPO, 3, "ok"), "{broken", "[1, 2]"])
    rows = parse_file(str(lines))
    assert [(r["source_line"], r.get("reason")) for r in rows] == [(1, None), (2, "broken_json"), (3, "not_an_object")]


def test_a_cut_gzip_file_keeps_its_readable_lines_and_is_rejected_after_them(tmp_path, monkeypatch):
    whole = gzip.compress(
        "".join(json.dumps(issue(REPO, n, f"issue {n}", "body " * 50)) + "\n" for n in range(1, 201)).encode()
    )
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    rows = parse_file(str(cut))
    accepted = [r for r in rows if r.get("reason") is None]
    assert accepted and [r["number"] for r in accepted] == list(range(1, len(accepted) + 1))
    last = rows[-1]
    assert last["reason"] == "unreadable_file" and "cut short" in last["detail"]
    assert last["source_line"] == rows[-2]["source_line"] + 1 and f"after {len(accepted)} whole lines" in last["detail"]
    assert [r for r in rows if r.get("reason") == "broken_json"] == []  # the line the cut ends in is the reject's raw
    assert last["raw"].startswith('{"')
    members = tmp_path / "members.jsonl.gz"  # two gzip members read in chunks smaller than each
    members.write_bytes(gzip.compress(b'{"a": 1}\n' * 50) + gzip.compress(b"{broken\n"))
    monkeypatch.setattr(issue_files, "GZIP_CHUNK", 16)
    assert [(r["source_line"], r["reason"]) for r in parse_file(str(members))][-2:] == [
        (50, "missing_field"),
        (51, "broken_json"),
    ]
    garbage = (
        tmp_path / "garbage.jsonl.gz"
    )  # bytes after the last member that are not gzip: every line kept, then the reject
    garbage.write_bytes(gzip.compress(b'{"a": 1}\n' * 3) + b"junk")
    assert [(r["source_line"], r["reason"]) for r in parse_file(str(garbage))] == [
        (1, "missing_field"),
        (2, "missing_field"),
        (3, "missing_field"),
        (4, "unreadable_file"),
    ]
    assert "4 bytes after gzip member 1 are not gzip data" in parse_file(str(garbage))[-1]["detail"]
    not_gzip = tmp_path / "plain.json.gz"
    not_gzip.write_text(json.dumps([issue(REPO, 1, "one")]))
    assert [(r["source_line"], r["reason"]) for r in parse_file(str(not_gzip))] == [(1, "unreadable_file")]


def test_find_files_names_the_missing_path(tmp_path):
    with pytest.raises(IngestError, match="nope.*does not exist"):
        find_files([str(tmp_path / "nope")])
    with pytest.raises(IngestError, match="no issue files"):
        find_files([str(tmp_path)])


# ---- the job on Spark + Delta ---------------------------------------------------------------


@pytest.mark.slow
def test_ingest_merges_rejects_and_is_idempotent(ctx, tmp_path):
    good = [issue(REPO, n, f"issue {n}", "body") for n in range(1, 6)]
    bad = [
        "{not json",
        json.dumps({**issue(REPO, 9, "x"), "created_at": "31/02/2021"}),
        json.dumps({k: v for k, v in issue(REPO, 10, "x").items() if k != "title"}),
    ]
    src = write_jsonl(tmp_path / "issues.jsonl", good + bad)

    first = ingest.run(ctx, [str(src)], framework="pytorch")
    assert (first["accepted"], first["rejected"], first["new_issues"]) == (5, 3, 5)
    assert first["rejects_by_reason"] == {"broken_json": 1, "bad_date": 1, "missing_field": 1}

    rejects = {(r["source_line"], r["reason"]) for r in ctx.lake.spark.read("bronze_rejects").collect()}
    assert rejects == {(6, "broken_json"), (7, "bad_date"), (8, "missing_field")}
    before = ctx.lake.spark.read("bronze_issues").orderBy("number").collect()
    assert [r["framework"] for r in before] == ["pytorch"] * 5
    assert json.loads(before[0]["raw_json"])["number"] == 1

    versions = [ctx.lake.spark.version(name) for name in ("bronze_issues", "bronze_rejects")]
    again = ingest.run(ctx, [str(src)], framework="pytorch")
    assert again["new_issues"] == 0 and again["rejected"] == 3
    # nothing changed, so nothing was rewritten or committed
    assert [ctx.lake.spark.version(name) for name in ("bronze_issues", "bronze_rejects")] == versions
    after = ctx.lake.spark.read("bronze_issues").orderBy("number").collect()
    assert [(r["number"], r["updated_at"], r["run_id"]) for r in after] == [
        (r["number"], r["updated_at"], r["run_id"]) for r in before
    ]
    assert ctx.lake.spark.read("bronze_rejects").count() == 3


@pytest.mark.slow
def test_newest_updated_at_wins(ctx, tmp_path):
    old = write_jsonl(tmp_path / "old.jsonl", [issue(REPO, 1, "old title", updated="2021-01-01T00:00:00Z")])
    new = write_jsonl(tmp_path / "new.jsonl", [issue(REPO, 1, "new title", updated="2022-01-01T00:00:00Z")])
    ingest.run(ctx, [str(new)])
    ingest.run(ctx, [str(old)])
    rows = ctx.lake.spark.read("bronze_issues").collect()
    assert [(r["number"], r["title"]) for r in rows] == [(1, "new title")]
    both = ingest.run(ctx, [str(old), str(new)])
    assert both["new_issues"] == 0
    assert ctx.lake.spark.read("bronze_issues").first()["title"] == "new title"


def test_unknown_framework_is_refused(ctx, tmp_path):
    src = write_jsonl(tmp_path / "i.jsonl", [issue(REPO, 1, "t")])
    with pytest.raises(IngestError, match="'mxnet' is not one of"):
        ingest.run(ctx, [str(src)], framework="mxnet")
