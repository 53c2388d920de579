"""Embed the current issue summaries in a pool of Ray actors into ``gold_embeddings``, incrementally.

The pending rows (current summary of every in-scope issue that has no vector
for this model and summary yet) are computed by DataFusion over the Delta
tables (delta-rs, no Spark) and streamed as Arrow batches; each batch's texts go
to an actor that loaded its encoder once, and each result is MERGEd into
``gold_embeddings`` while the actors work on the next batches. A rerun embeds
only new issues and changed summaries; rows that cannot be embedded land in
``embed_failures`` with the reason and are retried next time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf import Config
from conf.settings import EmbedConfig
from ray_tasks.encoders import EncoderSpec, align_static, aligned_static_dir, build_encoder, distill_static, static_model_dir
from ray_tasks.models import resolve_model
from schemas.ml import EMBED_FAILURES, GOLD_EMBEDDINGS

PENDING_COLUMNS = ("repository", "number", "summary_key", "text")


class EmbedError(RuntimeError):
    """The embed stage cannot start (no usable model or resources)."""


@dataclass(frozen=True)
class PoolPlan:
    """How many actors to start and what each one reserves."""

    actors: int
    num_cpus: float
    num_gpus: float
    device: str
    threads: int


def plan_pool(cfg: EmbedConfig, cluster_cpus: float, cluster_gpus: float) -> PoolPlan:
    """Size the actor pool from the cluster's resources.

    One fp16 actor per GPU on a GPU cluster; otherwise CPU actors of
    ``cpus_per_actor`` threads (one thread each for the static backend, which is
    single-threaded numpy). ``embed.actors`` overrides the count.

    Raises:
        EmbedError: the cluster reports no CPU at all.
    """
    if cluster_cpus < 1 and cluster_gpus < 1:
        raise EmbedError(f"the Ray cluster offers no CPU or GPU ({cluster_cpus} CPUs, {cluster_gpus} GPUs); check ray.address or ray.num_cpus")
    if cluster_gpus >= 1 and cfg.backend == "transformer":
        return PoolPlan(cfg.actors or int(cluster_gpus), 1, 1, "cuda", 1)
    per = 1 if cfg.backend == "static" else max(1, min(cfg.cpus_per_actor, int(cluster_cpus)))
    return PoolPlan(cfg.actors or max(1, int(cluster_cpus) // per), per, 0, "cpu", per)


def model_id(cfg: EmbedConfig) -> str:
    """The name vectors are stored under: static models carry their dimension and alignment, so a new one re-embeds."""
    if cfg.backend == "transformer":
        return cfg.model
    aligned = f"-a{cfg.static_align_texts}" if cfg.static_align_texts else ""
    return f"static-d{cfg.static_dims}{aligned}:{cfg.model}"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _current_sql(identity: tuple[str, str, str], model: str, select: str, join: str, where: str) -> str:
    summarizer, summary_model, prompt_version = identity
    filters = f"WHERE summarizer = {_sql_text(summarizer)} AND model = {_sql_text(summary_model)} AND prompt_version = {_sql_text(prompt_version)}"
    return f"""
        WITH ranked AS (
            SELECT repository, number, cache_key, summary,
                   ROW_NUMBER() OVER (PARTITION BY repository, number ORDER BY created_at DESC, cache_key DESC) AS rn
            FROM silver_summaries {filters}
        ),
        issues AS (SELECT DISTINCT repository, number FROM silver_issues),
        done AS (SELECT repository, number, summary_key, dim, vector FROM gold_embeddings WHERE model = {_sql_text(model)})
        SELECT {select}
        FROM ranked c
        JOIN issues i ON c.repository = i.repository AND c.number = i.number
        {join} done d ON d.repository = c.repository AND d.number = c.number AND d.summary_key = c.cache_key
        WHERE c.rn = 1 {where}
    """


def pending_sql(identity: tuple[str, str, str], model: str, count_only: bool = False) -> str:
    """DataFusion SQL for the rows to embed: current summaries of silver issues without a vector for them.

    Args:
        identity: (summarizer, model, prompt_version) of the summaries to use.
        model: the embedding model id; an issue whose vector has another summary key is pending again.
        count_only: return only the number of pending rows.
    """
    select = "COUNT(*) AS n" if count_only else "c.repository, c.number, c.cache_key AS summary_key, c.summary AS text"
    return _current_sql(identity, model, select, "LEFT JOIN", "AND d.summary_key IS NULL")


def current_vectors_sql(identity: tuple[str, str, str], model: str) -> str:
    """DataFusion SQL for the vectors of the current summaries of silver issues, ordered by issue key."""
    return _current_sql(identity, model, "d.repository, d.number, d.dim, d.vector", "JOIN", "") + " ORDER BY d.repository, d.number"


def summary_identity(cfg: Config) -> tuple[str, str, str]:
    """The (summarizer, model, prompt_version) the summarize stage writes with this config."""
    from jobs.summarize import summary_identity as identity

    return tuple(identity(cfg.summarize))


def rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup a stream of record batches into tables of ``rows`` rows (the last may be shorter)."""
    buffer: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - held, batch.num_rows)
            buffer.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == rows:
                yield pa.Table.from_batches(buffer)
                buffer, held = [], 0
    if held:
        yield pa.Table.from_batches(buffer)


def by_length(batches: Iterable[pa.RecordBatch], window: int) -> Iterator[pa.RecordBatch]:
    """The same rows, sorted by text length within windows of about ``window`` rows.

    sentence-transformers sorts the texts of each ``encode`` call; sorting across a
    window of several tasks also makes each task's texts alike, so its batches pad
    less and no task holds a mix of the shortest and the longest texts.
    """
    buffer: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        buffer.append(batch)
        held += batch.num_rows
        if held >= window:
            yield from _length_sorted(buffer)
            buffer, held = [], 0
    if buffer:
        yield from _length_sorted(buffer)


def _length_sorted(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    table = pa.Table.from_batches(batches)
    order = pc.sort_indices(pc.fill_null(pc.utf8_length(table.column("text")), 0))
    return table.take(order).combine_chunks().to_batches()


def split_embeddable(batch: pa.Table) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Separate rows that can be embedded from those that cannot (index, reason)."""
    texts = batch.column("text").to_pylist()
    bad = [(i, "empty summary: nothing to embed; rerun summarize for this issue") for i, t in enumerate(texts) if t is None or not t.strip()]
    if not bad:
        return batch, []
    mask = np.ones(batch.num_rows, dtype=bool)
    mask[[i for i, _ in bad]] = False
    return batch.filter(pa.array(mask)), bad


def gold_rows(batch: pa.Table, vectors: np.ndarray, model: str, run_id: str) -> pa.Table:
    """``gold_embeddings`` rows for a batch and its vectors (one row each, same order).

    Raises:
        ValueError: the vector count differs from the row count.
    """
    if len(vectors) != batch.num_rows:
        raise ValueError(f"{len(vectors)} vectors for {batch.num_rows} rows; the encoder must return one vector per text")
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
    return pa.Table.from_arrays(
        [
            batch.column("repository"),
            batch.column("number"),
            pa.array([model] * n, pa.string()),
            batch.column("summary_key"),
            pa.array(np.full(n, dim, dtype=np.int32)),
            pa.ListArray.from_arrays(offsets, flat),
            pa.array([run_id] * n, pa.string()),
        ],
        schema=GOLD_EMBEDDINGS.arrow,
    )


def failure_rows(batch: pa.Table, failures: list[tuple[int, str]], model: str, run_id: str) -> pa.Table:
    """``embed_failures`` rows for the given row indexes of a batch."""
    idx = pa.array([i for i, _ in failures], pa.int64())
    picked = batch.take(idx)
    return pa.Table.from_arrays(
        [picked.column("repository"), picked.column("number"), pa.array([model] * len(failures), pa.string()),
         picked.column("summary_key"), pa.array([r for _, r in failures], pa.string()), pa.array([run_id] * len(failures), pa.string())],
        schema=EMBED_FAILURES.arrow,
    )


def merge_rows(path: str, rows: pa.Table, key: tuple[str, ...]) -> None:
    """MERGE Arrow rows into a Delta table on ``key`` with delta-rs (Spark reads the result)."""
    from deltalake import DeltaTable

    if rows.num_rows == 0:
        return
    predicate = " AND ".join(f"t.{k} = s.{k}" for k in key)
    (
        DeltaTable(path).merge(rows, predicate=predicate, source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


class EmbedWorker:
    """Ray actor body: builds its encoder once, then turns text arrays into vectors."""

    def __init__(self, spec: EncoderSpec):
        self.encoder = build_encoder(spec)

    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: pa.Array) -> np.ndarray:
        return self.encoder.encode(texts.to_pylist())


class EmbedPool:
    """A pool of :class:`EmbedWorker` actors with a bounded queue per actor.

    Results come back in completion order, each with the batch it belongs to, so
    the caller writes them while the actors keep computing.
    """

    def __init__(self, spec: EncoderSpec, plan: PoolPlan, max_in_flight: int = 2):
        import ray

        actor = ray.remote(EmbedWorker).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)
        self.actors = [actor.remote(spec) for _ in range(plan.actors)]
        self.depth = max_in_flight
        self.dim = ray.get([a.dim.remote() for a in self.actors])[0]

    def map(self, batches: Iterable[pa.Table]) -> Iterator[tuple[pa.Table, np.ndarray | Exception]]:
        """Encode each batch's ``text`` column; yield (batch, vectors) or (batch, the error)."""
        load = {i: 0 for i in range(len(self.actors))}
        pending: dict[Any, tuple[int, pa.Table]] = {}
        for batch in batches:
            while len(pending) >= self.depth * len(self.actors):
                yield self._collect(pending, load)
            slot = min(load, key=load.get)
            load[slot] += 1
            pending[self.actors[slot].encode.remote(batch.column("text").combine_chunks())] = (slot, batch)
        while pending:
            yield self._collect(pending, load)

    @staticmethod
    def _collect(pending: dict, load: dict) -> tuple[pa.Table, np.ndarray | Exception]:
        import ray

        (ready,), _ = ray.wait(list(pending), num_returns=1)
        slot, batch = pending.pop(ready)
        load[slot] -= 1
        try:
            return batch, ray.get(ready)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            return batch, exc

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def encoder_spec(cfg: Config, embed: EmbedConfig, plan: PoolPlan) -> EncoderSpec:
    """The spec the actors build, distilling the static model first when needed (once, cached on disk).

    Raises:
        EmbedError: the static backend needs a local model folder and none was found.
    """
    import ray

    source = resolve_model(embed.model, embed.model_path)
    path = source
    if embed.backend == "static":
        if not Path(source).is_dir():
            raise EmbedError(f"embed.backend=static distills from a local folder, but {embed.model!r} resolved to {source!r}; set embed.model_path")
        target = static_model_dir(cfg.resolve_path(embed.static_cache_dir), embed.model, embed.static_dims)
        distilled = ray.get(ray.remote(distill_static).options(num_cpus=plan.num_cpus).remote(source, target, embed.static_dims))
        path = str(aligned_static(cfg, embed, plan, source, distilled) if embed.static_align_texts else distilled)
    return EncoderSpec(
        backend=embed.backend, model=model_id(embed), path=path, query_prefix=embed.query_prefix,
        max_seq_length=embed.max_seq_length, batch_size=embed.batch_size, device=plan.device,
        fp16=embed.fp16_on_gpu and plan.device == "cuda", threads=plan.threads,
    )


def alignment_texts(cfg: Config, n: int) -> list[str]:
    """A seeded sample of ``n`` current summary texts of silver issues (all of them when fewer).

    Raises:
        EmbedError: there is no summary to sample.
    """
    rows = [r for b in query(cfg, _current_sql(summary_identity(cfg), "", "c.repository, c.number, c.summary AS text", "LEFT JOIN", ""))
            for r in b.to_pylist() if r["text"] and r["text"].strip()]
    if not rows:
        raise EmbedError("no summaries to align the static model on; run `issuerisk summarize` first, or set embed.static_align_texts: 0")
    rows.sort(key=lambda r: (r["repository"], r["number"]))
    picked = np.random.default_rng(cfg.project.seed).permutation(len(rows))[:n]
    return [rows[i]["text"] for i in sorted(picked)]


def _encode(spec: EncoderSpec, texts: list[str]) -> np.ndarray:
    return build_encoder(spec).encode(texts)


def aligned_static(cfg: Config, embed: EmbedConfig, plan: PoolPlan, source: str, distilled: Path) -> Path:
    """The distilled model aligned to its transformer on a seeded sample of the corpus (once, cached on disk).

    The transformer embeds ``embed.static_align_texts`` summaries in one Ray task
    using every CPU of the pool (about a minute for 2,000 on two slow cores).
    """
    import ray

    target = aligned_static_dir(distilled, embed.static_align_texts)
    if (target / "vectors.npy").is_file():
        return target
    texts = alignment_texts(cfg, embed.static_align_texts)
    cpus = plan.actors * plan.num_cpus
    print(f"aligning the static model: embedding {len(texts):,} summaries with {embed.model} once ({cpus} CPUs)", flush=True)
    spec = EncoderSpec(backend="transformer", model=embed.model, path=source, query_prefix=embed.query_prefix,
                       max_seq_length=embed.max_seq_length, batch_size=embed.batch_size, threads=cpus)
    vectors = ray.get(ray.remote(_encode).options(num_cpus=cpus).remote(spec, texts))
    return align_static(distilled, target, texts, vectors, embed.query_prefix, embed.max_seq_length)


def plain_types(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Cast DataFusion's view types (``string_view``) to the plain ones the rest of pyarrow handles."""
    fields = [pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable) for f in batch.schema]
    schema = pa.schema(fields)
    return batch if schema == batch.schema else batch.cast(schema)


def query(cfg: Config, sql: str) -> Iterator[pa.RecordBatch]:
    """Stream DataFusion SQL over the project's summary, issue and embedding tables (delta-rs, no Spark)."""
    from deltalake import DeltaTable, QueryBuilder

    qb = QueryBuilder()
    for name in ("silver_summaries", "silver_issues", "gold_embeddings"):
        qb.register(name, DeltaTable(cfg.table_path(name)))
    for batch in pa.RecordBatchReader.from_stream(qb.execute(sql)):
        yield plain_types(batch)


def in_sample(cfg: Config) -> set[tuple[str, int]] | None:
    """The seeded sample of silver issue keys when ``project.sample_size`` is set, else None."""
    if cfg.project.sample_size is None:
        return None
    from deltalake import DeltaTable

    from jobs.sampling import sample_keys

    keys = DeltaTable(cfg.table_path("silver_issues")).to_pyarrow_table(columns=["repository", "number"])
    return sample_keys(zip(keys.column("repository").to_pylist(), keys.column("number").to_pylist()), cfg.project.sample_size, cfg.project.seed)


def restrict(batches: Iterable[pa.RecordBatch], keys: set[tuple[str, int]] | None) -> Iterator[pa.RecordBatch]:
    """Keep only rows whose (repository, number) is in ``keys``; None keeps all."""
    for batch in batches:
        if keys is not None:
            mask = [(r, n) in keys for r, n in zip(batch.column("repository").to_pylist(), batch.column("number").to_pylist())]
            batch = batch.filter(pa.array(mask, pa.bool_()))
        yield batch


def _embeddable(chunks: Iterable[pa.Table], reject) -> Iterator[pa.Table]:
    for chunk in chunks:
        good, bad = split_embeddable(chunk)
        if bad:
            reject(chunk, bad)
        if good.num_rows:
            yield good


def run(ctx, backend: str | None = None) -> dict:
    """Embed what is new or changed into ``gold_embeddings``; return the counts.

    Args:
        ctx: the stage context (config, run manifest, Ray).
        backend: ``transformer`` or ``static``; None keeps ``embed.backend``.

    Raises:
        EmbedError: no usable model or cluster resources.
    """
    import ray

    from issuerisk.display import progress, table

    cfg = ctx.cfg
    embed = cfg.embed if backend is None else cfg.embed.model_copy(update={"backend": backend})
    ctx.ray()
    ctx.run.read("silver_summaries", "silver_issues", "gold_embeddings")
    resources = ray.cluster_resources()
    plan = plan_pool(embed, resources.get("CPU", 0), resources.get("GPU", 0))
    model = model_id(embed)
    identity = summary_identity(cfg)
    sample = in_sample(cfg)
    pending = sum(b.column("n")[0].as_py() for b in query(cfg, pending_sql(identity, model, count_only=True)))
    counts = {"backend": embed.backend, "model": model, "actors": plan.actors, "device": plan.device, "pending": pending, "embedded": 0, "failed": 0}
    t0 = time.perf_counter()
    if pending:
        bar = progress(pending, f"embed {embed.backend}", "text", ctx.progress)
        failures_path = cfg.table_path(EMBED_FAILURES.name)

        def reject(batch: pa.Table, failures: list[tuple[int, str]]) -> None:
            merge_rows(failures_path, failure_rows(batch, failures, model, ctx.run.run_id), EMBED_FAILURES.key)
            counts["failed"] += len(failures)
            bar.update(len(failures))

        window = embed.rows_per_task * plan.actors * embed.max_in_flight
        good = _embeddable(rechunk(by_length(restrict(query(cfg, pending_sql(identity, model)), sample), window), embed.rows_per_task), reject)
        first = next(good, None)
        pool = None if first is None else EmbedPool(encoder_spec(cfg, embed, plan), plan, embed.max_in_flight)
        try:
            for batch, result in pool.map(itertools.chain([first], good)) if pool else ():
                if isinstance(result, Exception):
                    reject(batch, [(i, f"encoder failed: {str(result).splitlines()[-1][:500]}") for i in range(batch.num_rows)])
                    continue
                merge_rows(cfg.table_path(GOLD_EMBEDDINGS.name), gold_rows(batch, result, model, ctx.run.run_id), GOLD_EMBEDDINGS.key)
                counts["embedded"] += batch.num_rows
                counts["dim"] = int(result.shape[1])
                bar.update(batch.num_rows)
        finally:
            if pool:
                pool.close()
            bar.close()
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    ctx.run.wrote("gold_embeddings", "embed_failures")
    ctx.run.stage("embed", **counts)
    table("embed", ["backend", "model", "actors", "pending", "embedded", "failed", "seconds"], [[counts[k] for k in ("backend", "model", "actors", "pending", "embedded", "failed", "seconds")]])
    return counts
