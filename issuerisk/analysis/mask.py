"""Stage ``mask``: learn each repository's project-only words from the silver corpus into ``silver_project_terms``.

The embed stage removes them from that repository's summaries before embedding
(:mod:`issuerisk.vectors`), and the topics stage from the documents its
keywords come from, so clusters form around how frameworks fail, not around
which project an issue belongs to (:mod:`issuerisk.text.masking`). The terms
are a function of the silver build and the ``mask`` config: the table's commit
notes both, and an unchanged pair is not learned again.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_PROJECT_TERMS
from issuerisk.silver import SILVER_NAMES, silver_build
from issuerisk.stage import Stage
from issuerisk.text.masking import learn_terms

BODY_CHARS = 4000


def run(ctx: Context) -> dict[str, Any]:
    """Learn the project-only terms of the current silver build (skipped when they are up to date)."""
    tables, rules = ctx.lake.arrow, ctx.cfg.mask
    note = {
        "silver_build": silver_build(tables),
        "silver_version": tables.version(SILVER_ISSUES),
        "config": rules.model_dump(mode="json"),
    }
    if not rules.enabled:
        return {"enabled": False}
    if tables.exists(SILVER_PROJECT_TERMS) and tables.commit_metadata(SILVER_PROJECT_TERMS) == note:
        return {"enabled": True, "terms": tables.read(SILVER_PROJECT_TERMS, columns=["term"]).num_rows, "reused": True}
    t0 = time.perf_counter()
    issues = tables.read(SILVER_ISSUES, columns=["repository", "title", "body"], version=note["silver_version"])
    texts = (
        f"{t} {(b or '')[:BODY_CHARS]}"
        for t, b in zip(issues.column("title").to_pylist(), issues.column("body").to_pylist())
    )
    terms = learn_terms(issues.column("repository").to_pylist(), texts, rules.min_docs, rules.min_share)
    rows = pa.Table.from_pylist(
        [
            {"repository": r, "term": t, "issues": n, "share": share, "run_id": ctx.run.run_id}
            for r, t, n, share in terms
        ],
        schema=SILVER_PROJECT_TERMS.arrow,
    )
    tables.overwrite(SILVER_PROJECT_TERMS, rows, note)
    per_repo = (
        rows.group_by("repository")
        .aggregate([("term", "count")])
        .sort_by([("term_count", "descending")])
        .slice(0, 8)
        .to_pylist()
    )
    table(
        "mask: project-only terms (most per repository)",
        ["repository", "terms"],
        [(r["repository"], r["term_count"]) for r in per_repo],
    )
    return {
        "enabled": True,
        "terms": rows.num_rows,
        "repositories": len(set(rows.column("repository").to_pylist())),
        "issues": issues.num_rows,
        "seconds": round(time.perf_counter() - t0, 2),
        "reused": False,
    }


STAGE = Stage(
    "mask",
    "Learn each repository's project-only words (removed before embedding) into silver_project_terms",
    run,
    reads=tuple(sorted(SILVER_NAMES)),
    writes=(SILVER_PROJECT_TERMS.name,),
    sections=("mask",),
)
