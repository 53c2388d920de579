"""Framework tags per repository: given at ingest, or inferred from the evidence in its issues.

Evidence is code, not talk: imports (``import torch``, ``from tensorflow import``),
traceback paths (``site-packages/keras/``), qualified API names (``torch.nn``,
``tf.keras``, ``keras.layers``). An issue counts once per framework it shows; a
repository is tagged with every framework that has at least ``min_evidence``
issues and ``min_share`` of its strongest framework's count. No evidence means
``unknown``, never a guess.

The patterns run in the filter's one Python pass per repository
(:func:`issue_evidence`); Spark then sums them per repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pyspark.sql import Column, Row
from pyspark.sql import functions as F

from issuerisk.conf.settings import FrameworkInferenceConfig
from issuerisk.constants import UNKNOWN_FRAMEWORK

# Case-sensitive where the API is (tf., torch.).
EVIDENCE: dict[str, str] = {
    "pytorch": (
        r"(import torch\b|from torch[\. "
        r"]|\btorch\.(nn|cuda|tensor|Tensor|utils|optim|load|save|autograd|jit|onnx|distributed|float|from_numpy|no_grad|device|cat|stack|zeros|ones|randn)\b"
        r"|site-packages/torch/|\bpytorch_lightning\b|\bimport lightning\b|\btorchvision\b|\bRuntimeError: CUDA out of "
        r"memory)"
    ),
    "tensorflow": (
        r"(import tensorflow\b|from tensorflow[\. "
        r"]|\btf\.(compat|Session|Tensor|data|function|GradientTape|config|constant|Variable|placeholder|train|estimator|saved_model|io|image|nn|lite|math|reduce_\w+|keras)\b"
        r"|site-packages/tensorflow(_core)?/|\btensorflow-gpu\b|\btensorflow\.python\b)"
    ),
    "keras": (
        r"(import keras\b|from keras[\. "
        r"]|\bkeras\.(layers|models|Model|Sequential|callbacks|optimizers|backend|utils|losses|applications|preprocessing)\b"
        r"|\btf\.keras\b|from tensorflow import keras|site-packages/keras/)"
    ),
}


# Literals of which every alternative of the framework's pattern contains one, at most
# ANCHOR_OFFSET characters after the alternative's start (the most is 23, "keras" in
# "from tensorflow import keras"). A substring test skips the regex (a scan with many
# alternatives) on most texts, and the scan starts just before the first anchor.
ANCHORS: dict[str, tuple[str, ...]] = {
    "pytorch": ("torch", "lightning", "CUDA out of memory"),
    "tensorflow": ("tensorflow", "tf."),
    "keras": ("keras",),
}
ANCHOR_OFFSET = 32


_COMPILED = {fw: re.compile(pattern) for fw, pattern in EVIDENCE.items()}


def issue_evidence(title: str, body: str | None) -> tuple[int, ...]:
    """One 0/1 flag per framework of :data:`EVIDENCE` (in its order): does this issue's text show it?"""
    text = f"{title}\n{body or ''}"
    flags = []
    for fw in EVIDENCE:
        first = min((at for at in (text.find(a) for a in ANCHORS[fw]) if at >= 0), default=-1)
        # A match holds an anchor at most ANCHOR_OFFSET characters after its start, so none starts
        # earlier; ``search`` from a position still sees the characters before it for ``\b``.
        flags.append(int(first >= 0 and _COMPILED[fw].search(text, max(0, first - ANCHOR_OFFSET)) is not None))
    return tuple(flags)


def evidence_aggregates(is_issue: Column) -> list[Column]:
    """Aggregates for a ``groupBy("repository")`` over rows carrying :func:`issue_evidence` flags.

    They give: issues, the framework given at ingest (if any) and issues with evidence per framework,
    the input of :func:`tag_repositories`.

    Args:
        is_issue: true for the rows that count as the repository's issues (false for pull
            requests); rows where it is false must carry 0 flags.
    """
    return [
        F.count(F.when(is_issue, 1)).alias("issues"),
        F.max(F.when(is_issue, F.col("framework"))).alias("given"),
        *[F.sum(fw).cast("long").alias(fw) for fw in EVIDENCE],
    ]


def tag(evidence: dict[str, int], given: str | None, cfg: FrameworkInferenceConfig) -> tuple[list[str], str, str]:
    """(frameworks, primary framework, source) for one repository.

    A given tag wins; otherwise frameworks with enough evidence, strongest first
    (ties broken by name so the result is deterministic).
    """
    if given:
        return [given], given, "given"
    ranked = sorted(((n, fw) for fw, n in evidence.items() if n), key=lambda t: (-t[0], t[1]))
    if not ranked or ranked[0][0] < cfg.min_evidence:
        return [UNKNOWN_FRAMEWORK], UNKNOWN_FRAMEWORK, "inferred"
    top = ranked[0][0]
    tags = [fw for n, fw in ranked if n >= cfg.min_evidence and n >= cfg.min_share * top]
    return tags, tags[0], "inferred"


def tag_repositories(evidence: Iterable[Row], cfg: FrameworkInferenceConfig, run_id: str) -> list[tuple]:
    """Rows of ``silver_repositories`` (in its column order) from rows of :func:`evidence_aggregates`.

    A repository without issues (only pull requests) gets no row.
    """
    rows = []
    for r in evidence:
        if not r["issues"]:
            continue
        counts = {fw: int(r[fw] or 0) for fw in EVIDENCE}
        frameworks, primary, source = tag(counts, r["given"], cfg)
        rows.append((r["repository"], frameworks, primary, source, counts, int(r["issues"]), run_id))
    return rows
