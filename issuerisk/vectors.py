"""Which texts are embedded and which vectors are current, shared by the stages that embed, cluster and read embeddings.

An issue's current summary is the newest ``silver_summaries`` row with the
configured summarizer's identity (DataFusion SQL over the Delta tables). The
text embedded is that summary with its repository's project-only words removed
(``silver_project_terms``, :mod:`issuerisk.text.masking`), and it is keyed by
``<summary cache_key>:<hash of the text>``: a vector is current when
``gold_embeddings`` holds one of the configured model under that key, so a new
summary or a changed mask re-embeds exactly the issues it changes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from issuerisk.conf import Config
from issuerisk.lakehouse import ArrowTables
from issuerisk.lakehouse.arrow_tables import sql_text
from issuerisk.sampling import restrict, sampled_keys
from issuerisk.schemas.gold import GOLD_EMBEDDINGS
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.summarizers import SummaryIdentity, identity_of
from issuerisk.text.masking import mask, repository_words

SUMMARIES = pa.schema(
    [("repository", pa.string()), ("number", pa.int64()), ("cache_key", pa.string()), ("summary", pa.string())]
)


class NoVectorsError(RuntimeError):
    """No current embeddings exist for the configured model and summaries."""


def current_summaries_sql(identity: SummaryIdentity) -> str:
    """SQL for the current summary of every silver issue: (repository, number, cache_key, summary) in key order."""
    summarizer, summary_model, prompt_version = identity
    return f"""
        WITH ranked AS (
            SELECT repository, number, cache_key, summary,
                   ROW_NUMBER() OVER (PARTITION BY repository, number ORDER BY created_at DESC, cache_key DESC) AS rn
            FROM silver_summaries
            WHERE summarizer = {sql_text(summarizer)} AND model = {sql_text(summary_model)}
              AND prompt_version = {sql_text(prompt_version)}
        ),
        issues AS (SELECT DISTINCT repository, number FROM silver_issues)
        SELECT c.repository, c.number, c.cache_key, c.summary
        FROM ranked c JOIN issues i ON c.repository = i.repository AND c.number = i.number
        WHERE c.rn = 1
        ORDER BY c.repository, c.number
    """


def project_words(tables: ArrowTables, cfg: Config) -> dict[str, set[str]]:
    """Per repository, the words removed from its texts (its learned project-only terms and its own name's parts)."""
    if not cfg.mask.enabled:
        return {}
    terms = tables.read(SILVER_PROJECT_TERMS, columns=["repository", "term"])
    words: dict[str, set[str]] = {}
    for repository, term in zip(terms.column("repository").to_pylist(), terms.column("term").to_pylist()):
        words.setdefault(repository, set()).add(term)
    return words


def text_key(cache_key: str, text: str) -> str:
    """The key of an embedded text: its summary's cache key and a hash of the text itself."""
    return f"{cache_key}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def current_texts(tables: ArrowTables, cfg: Config) -> pa.Table:
    """The in-scope issues (the seeded sample when ``project.sample_size`` is set) with the text to embed and its
    key."""
    batches = list(
        restrict(
            tables.query(current_summaries_sql(identity_of(cfg.summarize)), (SILVER_SUMMARIES, SILVER_ISSUES)),
            sampled_keys(tables, cfg),
        )
    )
    rows = pa.Table.from_batches(batches) if batches else SUMMARIES.empty_table()
    learned = project_words(tables, cfg)
    own: dict[str, set[str]] = {}
    texts, keys = [], []
    for repository, key, summary in zip(
        rows.column("repository").to_pylist(), rows.column("cache_key").to_pylist(), rows.column("summary").to_pylist()
    ):
        if cfg.mask.enabled and repository not in own:
            own[repository] = repository_words(repository) | learned.get(repository, set())
        text = mask(summary or "", own.get(repository, set()))
        texts.append(text)
        keys.append(text_key(key, text))
    return pa.table(
        {
            "repository": rows.column("repository"),
            "number": rows.column("number"),
            "summary_key": pa.array(keys, pa.string()),
            "text": pa.array(texts, pa.string()),
        }
    )


def _embedded(tables: ArrowTables, model: str, columns: list[str]) -> pa.Table:
    return tables.read(GOLD_EMBEDDINGS, columns=columns, where={"model": model})


def pending(tables: ArrowTables, cfg: Config) -> pa.Table:
    """The current texts without a vector of ``embed.model`` under their key (what the embed stage must embed)."""
    texts = current_texts(tables, cfg)
    done = _embedded(tables, cfg.embed.key, ["repository", "number", "summary_key"])
    return texts.join(done, ["repository", "number", "summary_key"], join_type="left anti").sort_by(
        [("repository", "ascending"), ("number", "ascending")]
    )


def load_current_vectors(tables: ArrowTables, cfg: Config, with_text: bool = False) -> tuple[pa.Table, np.ndarray]:
    """Keys (repository, number; and the embedded ``text`` when asked) and the matrix of current vectors, in key order.

    Raises:
        NoVectorsError: no vectors, or vectors of mixed dimensions.
    """
    model = cfg.embed.key
    texts = current_texts(tables, cfg)
    embedded = _embedded(tables, model, ["repository", "number", "summary_key", "dim", "vector"])
    index = embedded.select(["repository", "number", "summary_key", "dim"]).append_column(
        "row", pa.array(np.arange(embedded.num_rows))
    )
    rows = texts.join(index, ["repository", "number", "summary_key"], join_type="inner").sort_by(
        [("repository", "ascending"), ("number", "ascending")]
    )
    if rows.num_rows == 0:
        raise NoVectorsError(
            f"no current embeddings for model {model!r}; run `issuerisk embed` first (with the same embed.model and "
            "summarizer)"
        )
    dims = set(rows.column("dim").to_pylist())
    if len(dims) != 1:
        raise NoVectorsError(
            f"embeddings of model {model!r} have mixed dimensions {sorted(dims)}; rerun `issuerisk embed`"
        )
    vectors = embedded.column("vector").take(rows.column("row")).combine_chunks()
    flat = vectors.flatten().to_numpy(zero_copy_only=False)
    keys = rows.select(["repository", "number", "text"] if with_text else ["repository", "number"])
    return keys, flat.reshape(rows.num_rows, dims.pop()).astype(np.float32)
