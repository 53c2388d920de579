"""Which summaries and vectors are current, shared by the stages that embed, cluster and read embeddings.

An issue's current summary is the newest ``silver_summaries`` row with the
configured summarizer's identity; its current vector is the ``gold_embeddings``
row of the configured model made from that summary (same ``summary_key``). The
SQL runs in DataFusion over the Delta tables through the lakehouse's Arrow side.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from issuerisk.conf import Config
from issuerisk.lakehouse import ArrowTables
from issuerisk.lakehouse.arrow_tables import sql_text
from issuerisk.sampling import restrict, sampled_keys
from issuerisk.schemas.lakehouse import SILVER_ISSUES
from issuerisk.schemas.ml import GOLD_EMBEDDINGS
from issuerisk.schemas.summaries import SILVER_SUMMARIES
from issuerisk.summarizers import SummaryIdentity, identity_of

TABLES = (SILVER_SUMMARIES, SILVER_ISSUES, GOLD_EMBEDDINGS)


class NoVectorsError(RuntimeError):
    """No current embeddings exist for the configured model and summaries."""


def _current_sql(identity: SummaryIdentity, model: str, select: str, join: str, where: str) -> str:
    summarizer, summary_model, prompt_version = identity
    filters = f"WHERE summarizer = {sql_text(summarizer)} AND model = {sql_text(summary_model)} AND prompt_version = {sql_text(prompt_version)}"
    return f"""
        WITH ranked AS (
            SELECT repository, number, cache_key, summary,
                   ROW_NUMBER() OVER (PARTITION BY repository, number ORDER BY created_at DESC, cache_key DESC) AS rn
            FROM silver_summaries {filters}
        ),
        issues AS (SELECT DISTINCT repository, number FROM silver_issues),
        done AS (SELECT repository, number, summary_key, dim, vector FROM gold_embeddings WHERE model = {sql_text(model)})
        SELECT {select}
        FROM ranked c
        JOIN issues i ON c.repository = i.repository AND c.number = i.number
        {join} done d ON d.repository = c.repository AND d.number = c.number AND d.summary_key = c.cache_key
        WHERE c.rn = 1 {where}
    """


def pending_sql(identity: SummaryIdentity, model: str, keys_only: bool = False) -> str:
    """SQL for the rows to embed: current summaries of silver issues without a vector of ``model`` for them.

    Args:
        keys_only: select only (repository, number), for counting.
    """
    select = "c.repository, c.number" if keys_only else "c.repository, c.number, c.cache_key AS summary_key, c.summary AS text"
    return _current_sql(identity, model, select, "LEFT JOIN", "AND d.summary_key IS NULL")


def current_vectors_sql(identity: SummaryIdentity, model: str) -> str:
    """SQL for the vectors of the current summaries of silver issues, ordered by issue key."""
    return _current_sql(identity, model, "d.repository, d.number, d.dim, d.vector", "JOIN", "") + " ORDER BY d.repository, d.number"


def current_summaries_sql(identity: SummaryIdentity) -> str:
    """SQL for the current summary text of every silver issue (with or without a vector)."""
    return _current_sql(identity, "", "c.repository, c.number, c.cache_key AS summary_key, c.summary AS text", "LEFT JOIN", "")


def pending(tables: ArrowTables, cfg: Config, keys_only: bool = False) -> Iterator[pa.RecordBatch]:
    """The in-scope (sampled, when ``project.sample_size`` is set) rows still to embed with ``embed.model``."""
    sql = pending_sql(identity_of(cfg.summarize), cfg.embed.model, keys_only)
    return restrict(tables.query(sql, TABLES), sampled_keys(tables, cfg))


def load_current_vectors(tables: ArrowTables, cfg: Config) -> tuple[pa.Table, np.ndarray]:
    """Keys (repository, number) and the matrix of current vectors of the in-scope issues, in key order.

    Raises:
        NoVectorsError: no vectors, or vectors of mixed dimensions.
    """
    model = cfg.embed.model
    sql = current_vectors_sql(identity_of(cfg.summarize), model)
    batches = list(restrict(tables.query(sql, TABLES), sampled_keys(tables, cfg)))
    rows = pa.Table.from_batches(batches) if batches else None
    if rows is None or rows.num_rows == 0:
        raise NoVectorsError(f"no current embeddings for model {model!r}; run `issuerisk embed` first (with the same embed.model and summarizer)")
    dims = set(rows.column("dim").to_pylist())
    if len(dims) != 1:
        raise NoVectorsError(f"embeddings of model {model!r} have mixed dimensions {sorted(dims)}; rerun `issuerisk embed`")
    flat = rows.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return rows.select(["repository", "number"]), flat.reshape(rows.num_rows, dims.pop()).astype(np.float32)
