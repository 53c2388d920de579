"""The encoder behind the embedding actors (a sentence-transformers model, offline), and where it runs.

It takes plain texts and returns L2-normalized float32 vectors. It caps the
sequence length and sorts texts by length (sentence-transformers does that per
``encode`` call); on a GPU it runs in fp16.

A static (model2vec-style) backend distilled from the transformer was removed:
on 2,000 real issues its clustering agreed with the transformer's at ARI 0.146,
against the transformer's own seed-to-seed ARI of 0.656 (bench.embed_cluster,
session 3), far under the 0.8 x ceiling it had to reach to be kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from issuerisk.conf.settings import EmbedConfig
from issuerisk.encoding.models import resolve_model


class Encoder(Protocol):
    """Texts in, one L2-normalized float32 row per text out."""

    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderSpec:
    """Everything an actor needs to build its encoder (plain values, cheap to ship to Ray).

    Attributes:
        model: configured model name (recorded in ``gold_embeddings.model``).
        path: local folder (or cached hub id) to load from.
        query_prefix: prepended to every text (e.g. the e5-instruct ``Instruct: ...\\nQuery: `` prefix).
        max_seq_length: token cap per text.
        batch_size: texts per forward pass (transformer only).
        device: ``cpu`` or ``cuda``.
        fp16: run the transformer in half precision (GPU only).
        threads: torch intra-op threads on CPU.
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (see :mod:`issuerisk.encoding.onnx_backend`).
        cache_dir: where the ONNX backends keep exported models.
    """

    model: str
    path: str
    query_prefix: str = ""
    max_seq_length: int = 128
    batch_size: int = 64
    device: str = "cpu"
    fp16: bool = False
    threads: int | None = None
    backend: str = "torch"
    cache_dir: str | None = None


class TransformerEncoder:
    """sentence-transformers model with a capped sequence length and normalized output."""

    def __init__(self, spec: EncoderSpec):
        import torch
        from sentence_transformers import SentenceTransformer

        if spec.device == "cpu" and spec.threads:
            torch.set_num_threads(spec.threads)
        self.model = SentenceTransformer(spec.path, device=spec.device)
        self.model.max_seq_length = spec.max_seq_length
        if spec.fp16 and spec.device.startswith("cuda"):
            self.model.half()
        self.spec = spec
        self.dim = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        prefixed = [self.spec.query_prefix + t for t in texts] if self.spec.query_prefix else list(texts)
        vectors = self.model.encode(
            prefixed,
            batch_size=self.spec.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def build_encoder(spec: EncoderSpec) -> Encoder:
    """The encoder a spec names.

    Raises:
        EmbedError: an ONNX backend asked of a GPU.
    """
    if spec.backend == "torch":
        return TransformerEncoder(spec)
    if spec.device != "cpu":
        raise EmbedError(
            f"embed.backend={spec.backend} runs on CPUs only and this cluster offers a GPU; set embed.backend to torch "
            "(fp16 on the GPU)"
        )
    from issuerisk.encoding.onnx_backend import OnnxEncoder

    return OnnxEncoder(spec, spec.cache_dir or "")


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
    ``cpus_per_actor`` threads. ``embed.actors`` overrides the count.

    Raises:
        EmbedError: the cluster reports no CPU at all.
    """
    if cluster_cpus < 1 and cluster_gpus < 1:
        raise EmbedError(
            f"the Ray cluster offers no CPU or GPU ({cluster_cpus} CPUs, {cluster_gpus} GPUs); check ray.address or "
            "ray.num_cpus"
        )
    if cluster_gpus >= 1:
        return PoolPlan(cfg.actors or int(cluster_gpus), 1, 1, "cuda", 1)
    per = max(1, min(cfg.cpus_per_actor, int(cluster_cpus)))
    return PoolPlan(cfg.actors or max(1, int(cluster_cpus) // per), per, 0, "cpu", per)


def cluster_pool_plan(cfg: EmbedConfig) -> PoolPlan:
    """:func:`plan_pool` for the resources of the Ray cluster this process joined."""
    import ray

    resources = ray.cluster_resources()
    return plan_pool(cfg, resources.get("CPU", 0), resources.get("GPU", 0))


IN_PROCESS = PoolPlan(actors=1, num_cpus=0, num_gpus=0, device="cpu", threads=0)
"""The plan of an encoder built in the calling process for a few texts (the category descriptions): CPU, torch's own
threads."""


def encoder_spec(embed: EmbedConfig, plan: PoolPlan = IN_PROCESS) -> EncoderSpec:
    """The spec every actor (or, with the default plan, this process) builds its encoder from (the model resolved to a
    local folder, offline): the one place the ``embed`` section becomes an encoder."""
    return EncoderSpec(
        model=embed.model,
        path=resolve_model(embed.model, embed.model_path),
        query_prefix=embed.query_prefix,
        max_seq_length=embed.max_seq_length,
        batch_size=embed.batch_size,
        device=plan.device,
        fp16=embed.fp16_on_gpu and plan.device == "cuda",
        threads=plan.threads,
        backend=embed.backend,
        cache_dir=embed.onnx_cache() if embed.backend != "torch" else None,
    )
