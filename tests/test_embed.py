"""Embedding stage: pool sizing, batching and row building (pure), then the real stage on Ray + Delta + MiniLM."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import onnx
import pyarrow as pa
import pytest

from issuerisk.conf.settings import EmbedConfig
from issuerisk.encoding.encoders import EmbedError, EncoderSpec, build_encoder, plan_pool
from issuerisk.ray_tasks.embed import gold_rows, rechunk, split_embeddable
from issuerisk.sampling import restrict
from issuerisk.schemas.gold import GOLD_EMBEDDINGS
from issuerisk.summarizers import SummaryIdentity, identity_of
from tests.conftest import make_ctx


def test_plan_pool_one_fp16_actor_per_gpu():
    plan = plan_pool(EmbedConfig(), cluster_cpus=32, cluster_gpus=4)
    assert (plan.actors, plan.num_gpus, plan.device) == (4, 1, "cuda")


def test_plan_pool_cpu_actors_take_cpus_per_actor_threads():
    plan = plan_pool(EmbedConfig(cpus_per_actor=2), cluster_cpus=8, cluster_gpus=0)
    assert (plan.actors, plan.num_cpus, plan.threads, plan.device) == (4, 2, 2, "cpu")


def test_plan_pool_honours_configured_actor_count():
    assert plan_pool(EmbedConfig(actors=3), cluster_cpus=2, cluster_gpus=0).actors == 3


def test_plan_pool_rejects_an_empty_cluster():
    with pytest.raises(EmbedError, match="no CPU or GPU"):
        plan_pool(EmbedConfig(), cluster_cpus=0, cluster_gpus=0)


def test_current_summaries_sql_filters_on_summary_identity_and_quotes():
    from issuerisk.vectors import current_summaries_sql

    sql = current_summaries_sql(SummaryIdentity("extractive", "o'brien", "v1"))
    assert "summarizer = 'extractive'" in sql and "model = 'o''brien'" in sql and "prompt_version = 'v1'" in sql


def test_rechunk_regroups_batches_without_losing_rows():
    batches = [pa.record_batch({"a": list(range(i, i + n))}) for i, n in ((0, 3), (3, 5), (8, 1))]
    chunks = list(rechunk(batches, 4))
    assert [c.num_rows for c in chunks] == [4, 4, 1]
    assert sum((c.column("a").to_pylist() for c in chunks), []) == list(range(9))


def test_restrict_keeps_sampled_keys_only():
    batch = pa.record_batch({"repository": ["a/b", "a/b", "c/d"], "number": [1, 2, 1]})
    kept = list(restrict([batch], {("a/b", 2), ("c/d", 1)}))[0]
    assert list(zip(kept.column("repository").to_pylist(), kept.column("number").to_pylist())) == [
        ("a/b", 2),
        ("c/d", 1),
    ]


def test_split_embeddable_reports_empty_summaries():
    batch = pa.table(
        {
            "repository": ["r", "r", "r"],
            "number": [1, 2, 3],
            "summary_key": ["k1", "k2", "k3"],
            "text": ["crash", "  ", "oom"],
        }
    )
    good, bad = split_embeddable(batch)
    assert good.column("number").to_pylist() == [1, 3]
    assert [i for i, _ in bad] == [1] and "empty summary" in bad[0][1]


def test_gold_rows_have_the_table_schema_and_reject_a_count_mismatch():
    batch = pa.table(
        {
            "repository": ["r", "r"],
            "number": pa.array([1, 2], pa.int64()),
            "summary_key": ["k1", "k2"],
            "text": ["a", "b"],
        }
    )
    rows = gold_rows(batch, np.eye(2, 3, dtype=np.float32), "m", "run1")
    assert rows.schema == GOLD_EMBEDDINGS.arrow
    assert rows.column("vector").to_pylist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert rows.column("dim").to_pylist() == [3, 3]
    with pytest.raises(ValueError, match="3 vectors for 2 rows"):
        gold_rows(batch, np.zeros((3, 3), np.float32), "m", "run1")


# ---------------------------------------------------------------- real Spark + Delta + Ray + MiniLM

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
TEXTS = [
    "CUDA out of memory when training a ResNet with batch size 256",
    "Model export to ONNX fails with an unsupported operator",
    "Loss becomes NaN after a few epochs with mixed precision",
    "Documentation link for the installation guide is broken",
    "DataLoader hangs with num_workers greater than zero on Windows",
    "Keras model.save raises a TypeError for a custom layer",
    "tf.function retracing warning floods the logs",
    "Segmentation fault importing torch after installing opencv",
]


def _issue(repo, number):
    return {
        "repository": repo,
        "number": number,
        "title": f"issue {number}",
        "body": "",
        "state": "open",
        "labels": [],
        "user_login": "u",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "created_at": T0,
        "updated_at": T0,
        "closed_at": None,
        "is_closed": False,
        "resolution_hours": None,
        "framework": "pytorch",
        "frameworks": ["pytorch"],
        "framework_source": "given",
        "language": "en",
        "language_confidence": 1.0,
        "run_id": "seed",
    }


def _summary(cfg, repo, number, text, key, when=T0):
    summarizer, model, prompt = identity_of(cfg.summarize)
    return {
        "cache_key": key,
        "repository": repo,
        "number": number,
        "summarizer": summarizer,
        "model": model,
        "prompt_version": prompt,
        "summary": text,
        "input_tokens": 0,
        "output_tokens": 0,
        "run_id": "seed",
        "created_at": when,
    }


def _write(ctx, spec, rows):
    """Synthetic rows into a table through the lakehouse's Arrow side."""
    ctx.lake.arrow.merge(spec, pa.Table.from_pylist(rows, schema=spec.arrow))


def _vectors(ctx):
    rows = ctx.lake.arrow.read(GOLD_EMBEDDINGS).to_pylist()
    return {(r["repository"], r["number"]): r for r in rows}


@pytest.mark.slow
def test_embed_stage_matches_sentence_transformers_and_is_incremental(ctx, spark, ray_session, minilm_path):
    """Synthetic issues and summaries (hand-written texts); vectors must equal MiniLM called directly."""
    from sentence_transformers import SentenceTransformer

    from issuerisk.ray_tasks import embed
    from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_SUMMARIES

    ctx = make_ctx(ctx.cfg.updated("embed", rows_per_task=3, batch_size=4), spark)
    repo = "synthetic/repo"
    _write(ctx, SILVER_ISSUES, [_issue(repo, n) for n in range(1, 11)])
    summaries = [_summary(ctx.cfg, repo, n + 1, t, f"k{n + 1}") for n, t in enumerate(TEXTS)]
    summaries.append(_summary(ctx.cfg, repo, 9, "   ", "k9"))
    summaries.append(_summary(ctx.cfg, "other/repo", 1, "not a silver issue", "kx"))
    _write(ctx, SILVER_SUMMARIES, summaries)

    first = embed.run(ctx)
    assert (first["pending"], first["embedded"], first["failed"]) == (9, 8, 1)
    stored = _vectors(ctx)
    assert sorted(stored) == [(repo, n) for n in range(1, 9)]
    direct = SentenceTransformer(minilm_path, device="cpu").encode(TEXTS, normalize_embeddings=True)
    got = np.array([stored[(repo, n)]["vector"] for n in range(1, 9)], dtype=np.float32)
    np.testing.assert_allclose(got, direct, atol=2e-5)
    assert {r["summary_key"].split(":")[0] for r in stored.values()} == {f"k{n}" for n in range(1, 9)}, (
        "keyed by summary and text"
    )
    assert ctx.lake.spark.read("gold_embeddings").count() == 8
    failures = ctx.lake.spark.read("embed_failures").collect()
    assert [(f.number, f.summary_key.split(":")[0]) for f in failures] == [(9, "k9")] and "empty summary" in failures[
        0
    ].reason

    again = embed.run(ctx)
    assert (again["pending"], again["embedded"]) == (1, 0)

    _write(ctx, SILVER_SUMMARIES, [_summary(ctx.cfg, repo, 2, TEXTS[0], "k2b", T0 + timedelta(days=1))])
    changed = embed.run(ctx)
    assert (changed["pending"], changed["embedded"]) == (2, 1)
    after = _vectors(ctx)
    assert after[(repo, 2)]["summary_key"].startswith("k2b:") and after[(repo, 2)]["run_id"] == ctx.run.run_id
    np.testing.assert_allclose(after[(repo, 2)]["vector"], direct[0], atol=2e-5)
    assert after[(repo, 3)]["vector"] == stored[(repo, 3)]["vector"]


@pytest.mark.slow
def test_embed_stage_respects_the_sample(ctx, spark, ray_session):
    """Synthetic rows: with project.sample_size=3 only the 3 sampled issues are counted as pending and embedded."""
    from issuerisk.ray_tasks import embed
    from issuerisk.sampling import sample_keys
    from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_SUMMARIES

    ctx = make_ctx(ctx.cfg.updated("project", sample_size=3), spark)
    repo = "synthetic/sample"
    _write(ctx, SILVER_ISSUES, [_issue(repo, n) for n in range(1, 9)])
    _write(ctx, SILVER_SUMMARIES, [_summary(ctx.cfg, repo, n + 1, t, f"s{n}") for n, t in enumerate(TEXTS)])
    result = embed.run(ctx)
    assert (result["pending"], result["embedded"]) == (3, 3)
    assert set(_vectors(ctx)) == sample_keys([(repo, n) for n in range(1, 9)], 3, ctx.cfg.project.seed)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_pool_embeds_in_fp16_close_to_cpu(minilm_path, ray_session):
    """On a GPU machine: one fp16 actor per GPU gives vectors within 1e-2 of fp32 CPU ones."""
    import ray

    from issuerisk.encoding.encoders import PoolPlan
    from issuerisk.ray_tasks.embed import EmbedPool

    spec = EncoderSpec(model="m", path=minilm_path, device="cuda", fp16=True)
    pool = EmbedPool(spec, PoolPlan(int(ray.cluster_resources().get("GPU", 1)), 1, 1, "cuda", 1))
    batch = pa.table({"text": TEXTS})
    ((_, vectors),) = list(pool.map([batch]))
    pool.close()
    cpu = build_encoder(EncoderSpec(model="m", path=minilm_path)).encode(TEXTS)
    np.testing.assert_allclose(vectors, cpu, atol=1e-2)


def test_by_length_sorts_within_windows_and_keeps_every_row():
    from issuerisk.ray_tasks.embed import by_length

    texts = ["a" * n for n in (5, 1, 4, 2, 3, 9, 7)]  # SYNTHETIC
    batches = pa.table({"key": list(range(7)), "text": texts}).to_batches(max_chunksize=2)
    out = pa.Table.from_batches(list(by_length(batches, 4)))
    assert sorted(out.column("key").to_pylist()) == list(range(7))
    lengths = [len(t) for t in out.column("text").to_pylist()]
    assert lengths == [1, 2, 4, 5, 3, 7, 9]  # windows of 4 rows (two batches of 2), then the rest


@pytest.mark.slow
def test_onnx_backends_export_once_and_give_the_transformer_s_vectors(minilm_path, tmp_path):
    """Issue 28.1: the transformer exported to ONNX (fp32 with fused attention: the same vectors) and quantized to
    int8 (close to them), cached by model and weight hash, so a second encoder exports nothing; GPUs are refused;
    vectors of each backend are recorded under their own model key."""
    reference = build_encoder(EncoderSpec(model="m", path=minilm_path, threads=2)).encode(TEXTS)
    plain = build_encoder(EncoderSpec(model="m", path=minilm_path, backend="onnx", cache_dir=str(tmp_path)))
    np.testing.assert_allclose(plain.encode(TEXTS), reference, atol=1e-4)
    spec = EncoderSpec(model="m", path=minilm_path, backend="onnx-int8", cache_dir=str(tmp_path))
    int8 = build_encoder(spec)
    cosine = (int8.encode(TEXTS) * reference).sum(1)
    assert cosine.min() > 0.85 and cosine.mean() > 0.9, cosine
    exported = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.onnx")}
    assert sorted(p.name for p in exported) == ["model.fused.onnx", "model.int8.onnx", "model.onnx"]
    fused = onnx.load(str(next(p for p in exported if p.name == "model.fused.onnx")))
    assert sum(node.op_type == "Attention" for node in fused.graph.node) == 6, "one fused attention per layer"
    build_encoder(spec)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.onnx")} == exported, "the cache is reused"
    with pytest.raises(EmbedError, match="CPUs only"):
        build_encoder(EncoderSpec(model="m", path=minilm_path, backend="onnx-int8", device="cuda"))
    assert EmbedConfig(backend="onnx-int8").key == "onnx-int8:sentence-transformers/all-MiniLM-L6-v2"
    assert EmbedConfig(backend="torch").key == "sentence-transformers/all-MiniLM-L6-v2"
    assert EmbedConfig().key == "onnx:sentence-transformers/all-MiniLM-L6-v2", "the CPU default"
