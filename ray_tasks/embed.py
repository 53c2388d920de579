"""Stage ``embed``: the current issue summaries into ``gold_embeddings`` through a pool of Ray actors, incrementally.

The pending rows (the current summary of every in-scope issue, its project-only
words removed, that has no vector for this model and text yet,
:mod:`issuerisk.vectors`) are sorted by length within windows and cut into
tasks; each task's texts go to an actor that loaded its encoder once, and each
result is MERGEd into ``gold_embeddings`` while the actors work on the next
tasks. A rerun embeds only new issues and changed texts; rows that cannot be
embedded land in ``embed_failures`` with the reason and are retried next time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from issuerisk.context import Context
from issuerisk.encoding.encoders import EncoderSpec, PoolPlan, build_encoder, cluster_pool_plan, encoder_spec
from issuerisk.encoding.models import model_identity
from issuerisk.schemas.gold import GOLD_EMBEDDINGS
from issuerisk.schemas.silver import EMBED_FAILURES, SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.stage import Stage
from issuerisk.vectors import pending

if TYPE_CHECKING:
    from issuerisk.conf.settings import EmbedConfig


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
    bad = [
        (i, "empty summary: nothing to embed; rerun summarize for this issue")
        for i, t in enumerate(texts)
        if t is None or not t.strip()
    ]
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
        raise ValueError(
            f"{len(vectors)} vectors for {batch.num_rows} rows; the encoder must return one vector per text"
        )
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
        [
            picked.column("repository"),
            picked.column("number"),
            pa.array([model] * len(failures), pa.string()),
            picked.column("summary_key"),
            pa.array([r for _, r in failures], pa.string()),
            pa.array([run_id] * len(failures), pa.string()),
        ],
        schema=EMBED_FAILURES.arrow,
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
        self.actors = [actor.remote(spec) for _ in range(plan.actors)]  # they load their model meanwhile
        self.depth = max_in_flight
        self.dim: int | None = None

    def ready(self) -> int:
        """Wait until every actor loaded its model (a load error is raised here, not per batch); the vector size."""
        import ray

        if self.dim is None:
            self.dim = ray.get([a.dim.remote() for a in self.actors])[0]
        return self.dim

    def map(self, batches: Iterable[pa.Table]) -> Iterator[tuple[pa.Table, np.ndarray | Exception]]:
        """Encode each batch's ``text`` column; yield (batch, vectors) or (batch, the error)."""
        self.ready()
        load = {i: 0 for i in range(len(self.actors))}
        in_flight: dict[Any, tuple[int, pa.Table]] = {}
        for batch in batches:
            while len(in_flight) >= self.depth * len(self.actors):
                yield self._collect(in_flight, load)
            slot = min(load, key=load.get)
            load[slot] += 1
            in_flight[self.actors[slot].encode.remote(batch.column("text").combine_chunks())] = (slot, batch)
        while in_flight:
            yield self._collect(in_flight, load)

    @staticmethod
    def _collect(in_flight: dict, load: dict) -> tuple[pa.Table, np.ndarray | Exception]:
        import ray

        (ready,), _ = ray.wait(list(in_flight), num_returns=1)
        slot, batch = in_flight.pop(ready)
        load[slot] -= 1
        try:
            return batch, ray.get(ready)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            return batch, exc

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def start_pool(embed: EmbedConfig, plan: PoolPlan) -> EmbedPool:
    """The configured model's actor pool for ``plan`` (the actors load the model in the background)."""
    return EmbedPool(encoder_spec(embed, plan), plan, embed.max_in_flight)


def _embeddable(
    chunks: Iterable[pa.Table], reject: Callable[[pa.Table, list[tuple[int, str]]], None]
) -> Iterator[pa.Table]:
    for chunk in chunks:
        good, bad = split_embeddable(chunk)
        if bad:
            reject(chunk, bad)
        if good.num_rows:
            yield good


def embed_all(
    pool_factory: Callable[[], "EmbedPool"],
    batches: Iterator[pa.Table],
    on_vectors: Callable[[pa.Table, np.ndarray], None],
    on_failures: Callable[[pa.Table, list[tuple[int, str]]], None],
) -> None:
    """Encode every batch through a pool started only when there is a first batch; hand each result on.

    An actor's failure on a batch becomes a failure of each of its rows (the rest go on).
    """
    first = next(batches, None)
    if first is None:
        return
    pool = pool_factory()
    try:
        for batch, result in pool.map(itertools.chain([first], batches)):
            if isinstance(result, Exception):
                on_failures(
                    batch, [(i, f"encoder failed: {str(result).splitlines()[-1][:500]}") for i in range(batch.num_rows)]
                )
            else:
                on_vectors(batch, result)
    finally:
        pool.close()


def run(ctx: Context) -> dict[str, Any]:
    """Embed what is new or changed into ``gold_embeddings``; return the counts.

    Plan: size the actor pool from the Ray cluster and count the pending rows of the
    sample in scope. Execute: stream the pending rows, sorted by length within windows,
    in tasks of ``embed.rows_per_task`` rows through the pool; MERGE each result (and
    each unembeddable row into ``embed_failures``) as it arrives.

    Raises:
        EmbedError: no usable model or cluster resources.
    """
    from issuerisk.display import progress, table

    cfg, embed, tables = ctx.cfg, ctx.cfg.embed, ctx.lake.arrow
    ctx.ray()
    plan = cluster_pool_plan(embed)
    todo = pending(tables, cfg)
    count = todo.num_rows
    counts = {
        "model": embed.key,
        "actors": plan.actors,
        "device": plan.device,
        "pending": count,
        "embedded": 0,
        "failed": 0,
    }
    ctx.run.runtime.update(
        embed_model=model_identity(embed.model, embed.model_path), embed_device=plan.device, embed_backend=embed.backend
    )
    t0 = time.perf_counter()
    bar = progress(count, "embed", "text", ctx.progress)

    def store(batch: pa.Table, vectors: np.ndarray) -> None:
        tables.merge(GOLD_EMBEDDINGS, gold_rows(batch, vectors, embed.key, ctx.run.run_id))
        counts["embedded"] += batch.num_rows
        counts["dim"] = int(vectors.shape[1])
        bar.update(batch.num_rows)

    def reject(batch: pa.Table, failures: list[tuple[int, str]]) -> None:
        tables.merge(EMBED_FAILURES, failure_rows(batch, failures, embed.key, ctx.run.run_id))
        counts["failed"] += len(failures)
        bar.update(len(failures))

    window = embed.rows_per_task * plan.actors * embed.max_in_flight
    batches = _embeddable(rechunk(by_length(todo.to_batches(), window), embed.rows_per_task), reject)
    warmed = ctx.warmed.pop("embed", None)
    try:
        embed_all(lambda: warmed or start_pool(embed, plan), batches, store, reject)
    finally:
        if warmed is not None:
            warmed.close()
        bar.close()
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    table(
        "embed",
        ["model", "actors", "pending", "embedded", "failed", "seconds"],
        [[counts[k] for k in ("model", "actors", "pending", "embedded", "failed", "seconds")]],
    )
    return counts


def warm(ctx: Context) -> None:
    """Start the actor pool ahead of ``run`` (``issuerisk run`` calls this once Ray is up): the actors load their model
    while the Spark stages work, which takes seconds per actor (torch and the model)."""
    ctx.ray()
    ctx.warmed["embed"] = start_pool(ctx.cfg.embed, cluster_pool_plan(ctx.cfg.embed))


STAGE = Stage(
    "embed",
    "Embed summaries in Ray actors into gold_embeddings (incremental)",
    run,
    reads=(SILVER_SUMMARIES.name, SILVER_ISSUES.name, SILVER_PROJECT_TERMS.name, GOLD_EMBEDDINGS.name),
    writes=(GOLD_EMBEDDINGS.name, EMBED_FAILURES.name),
    sections=("embed",),
    warm=warm,
)
