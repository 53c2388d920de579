"""The summarize stage on real Spark + Delta: cache hits, batches, recorded failures and LLM calls counted on a local
server."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest

from issuerisk.jobs import summarize
from issuerisk.schemas.silver import SILVER_ISSUES
from issuerisk.stage import execute
from issuerisk.summarizers import identity_of
from tests.conftest import make_ctx
from tests.fakes.openai_server import FakeOpenAIServer, Fault, server_error

pytestmark = pytest.mark.slow

ISSUES = [
    (
        "org/a",
        1,
        "Loss is NaN",
        "Training gives NaN.\n```\nRuntimeError: Function 'LogSoftmaxBackward' returned nan values\n```",
    ),
    ("org/a", 2, "Docs typo", "The README says `torch.load` twice."),
    ("org/b", 7, "Crash on import", None),
]


def _write_silver(ctx, issues):
    """Synthetic silver rows (only the text columns matter here)."""
    created = datetime(2022, 1, 1, tzinfo=timezone.utc)
    rows = [
        {
            "repository": r,
            "number": n,
            "title": t,
            "body": b,
            "state": "open",
            "labels": [],
            "user_login": "u",
            "html_url": None,
            "created_at": created,
            "updated_at": created,
            "closed_at": None,
            "is_closed": False,
            "resolution_hours": None,
            "framework": "pytorch",
            "frameworks": ["pytorch"],
            "framework_source": "given",
            "language": "en",
            "language_confidence": 0.99,
            "run_id": "test",
        }
        for r, n, t, b in issues
    ]
    ctx.lake.spark.merge(SILVER_ISSUES, ctx.spark.createDataFrame(rows, SILVER_ISSUES.spark))


def _table(ctx, name):
    return sorted(
        (r.asDict() for r in ctx.lake.spark.read(name).collect()), key=lambda r: (r["repository"], r["number"])
    )


def test_extractive_stage_caches_and_resummarizes_only_changed_issues(ctx):
    _write_silver(ctx, ISSUES)
    first = summarize.run(ctx)
    assert (first["issues"], first["cached"], first["summarized"], first["failed"]) == (3, 0, 3, 0)

    rows = _table(ctx, "silver_summaries")
    identity = identity_of(ctx.cfg.summarize)
    assert [(r["repository"], r["number"]) for r in rows] == [("org/a", 1), ("org/a", 2), ("org/b", 7)]
    assert all((r["summarizer"], r["model"], r["prompt_version"]) == identity for r in rows)
    assert (
        rows[0]["summary"]
        == "Loss is NaN. Error: RuntimeError: Function 'LogSoftmaxBackward' returned nan values. Training gives NaN."
    )
    assert rows[2]["summary"] == "Crash on import"
    expected_key = hashlib.sha256(
        "\x1f".join([*identity, "org/a", "1", ISSUES[0][2], ISSUES[0][3]]).encode()
    ).hexdigest()
    assert rows[0]["cache_key"] == expected_key

    again = summarize.run(ctx)
    assert (again["cached"], again["summarized"]) == (3, 0)

    _write_silver(ctx, [("org/a", 2, "Docs typo", "The README says `torch.save` twice.")])
    changed = execute(summarize.STAGE, ctx, {"limit": None, "run_id": "ignored"})
    assert (changed["cached"], changed["summarized"]) == (2, 1)
    assert len(_table(ctx, "silver_summaries")) == 4
    assert ctx.run.metrics["summarize"]["summarized"] == 1 and ctx.run.metrics["summarize"]["stage_seconds"] > 0
    assert (
        ctx.run.metrics["summarize"]["cpu_cores_busy"] is not None
    )  # the machine's busy cores, recorded by the runner


def test_limit_and_sample(ctx):
    _write_silver(ctx, ISSUES)
    limited = summarize.run(ctx, limit=2)
    assert (limited["summarized"], limited["not_attempted"]) == (2, 1)
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        summarize.run(ctx, limit=0)
    sampled = summarize.run(make_ctx(ctx.cfg.updated("project", sample_size=1), ctx.spark))
    assert sampled["issues"] == 1


def test_llm_stage_records_failures_and_calls_the_model_only_for_misses(ctx, monkeypatch):
    _write_silver(ctx, ISSUES)
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-stage-test-key-123")
        llm = {"model": "fake-model", "max_retries": 1, "backoff_base_s": 0.0, "concurrency": 1, "timeout_s": 5.0}
        llm_ctx = make_ctx(ctx.cfg.updated("summarize", batch_size=1, llm=llm, summarizer="llm"), ctx.spark)
        server.script(Fault("malformed"), server_error(500), server_error(500))

        first = summarize.run(llm_ctx)
        assert server.count == 4
        assert (first["summarized"], first["failed"], first["failed_by_reason"]) == (
            1,
            2,
            {"malformed": 1, "server_error": 1},
        )
        assert (first["calls"], first["retries"]) == (4, 1)
        assert first["input_tokens"] > 0 and first["output_tokens"] > 0

        failures = _table(ctx, "silver_summary_failures")
        assert [(f["repository"], f["number"], f["reason"], f["calls"]) for f in failures] == [
            ("org/a", 1, "malformed", 1),
            ("org/a", 2, "server_error", 2),
        ]
        assert "sk-stage" not in str(failures)
        summaries = _table(ctx, "silver_summaries")
        assert [(s["repository"], s["number"], s["summarizer"], s["model"]) for s in summaries] == [
            ("org/b", 7, "llm", "fake-model")
        ]
        assert summaries[0]["summary"].startswith("Crash on import. Symptom:") and first["fallback_by_reason"] == {}

        second = summarize.run(llm_ctx)
        assert server.count == 6
        assert (second["cached"], second["summarized"], second["failed"]) == (1, 2, 0)
        third = summarize.run(llm_ctx)
        assert server.count == 6 and third["cached"] == 3 and third["calls"] == 0


def test_extractive_summaries_land_in_one_merge_whatever_the_batch_size(ctx):
    """A local summarizer redoes its work in seconds, so its summaries cost one Delta commit, not one per batch."""
    _write_silver(ctx, ISSUES)
    ctx = make_ctx(ctx.cfg.updated("summarize", batch_size=1), ctx.spark)
    before = ctx.lake.arrow.version("silver_summaries")
    assert summarize.run(ctx)["summarized"] == 3
    assert ctx.lake.arrow.version("silver_summaries") == (0 if before is None else before + 1)
