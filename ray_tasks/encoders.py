"""Encoder backends: the full sentence-transformers model, or a static model distilled from it.

Both take plain texts and return L2-normalized float32 vectors, so the embed
stage and the benchmark treat them alike. The ``transformer`` backend caps the
sequence length and sorts texts by length (sentence-transformers does that per
``encode`` call); on a GPU it runs in fp16. The ``static`` backend is distilled
locally from the configured transformer the way model2vec does it (every
vocabulary token through the model, PCA, Zipf/SIF weighting), then aligned to
the transformer on a sample of the corpus (a linear map folded into the token
table), cached on disk, and needs only ``tokenizers`` and numpy at inference:
thousands of texts per second on one slow core.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

STATIC_FORMAT = 3
SIF_COEFFICIENT = 1e-4
ALIGN_RIDGE = 0.01


class EncoderError(RuntimeError):
    """An encoder cannot be built from the given settings or files."""


class Encoder(Protocol):
    """Texts in, one L2-normalized float32 row per text out."""

    model_id: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderSpec:
    """Everything an actor needs to build its encoder (plain values, cheap to ship to Ray).

    Attributes:
        backend: ``transformer`` or ``static``.
        model: configured model name (recorded in ``gold_embeddings.model``).
        path: local folder to load from (the transformer, or the distilled static model).
        query_prefix: prepended to every text (e.g. the e5-instruct ``Instruct: ...\\nQuery: `` prefix).
        max_seq_length: token cap per text.
        batch_size: texts per forward pass (transformer only).
        device: ``cpu`` or ``cuda``.
        fp16: run the transformer in half precision (GPU only).
        threads: torch intra-op threads on CPU.
    """

    backend: str
    model: str
    path: str
    query_prefix: str = ""
    max_seq_length: int = 128
    batch_size: int = 64
    device: str = "cpu"
    fp16: bool = False
    threads: int | None = None

    @property
    def model_id(self) -> str:
        """The name rows are stored under: the model, prefixed with ``static:`` for distilled ones."""
        return self.model if self.backend == "transformer" else f"static:{self.model}"


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
        self.model_id = spec.model_id
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        prefixed = [self.spec.query_prefix + t for t in texts] if self.spec.query_prefix else list(texts)
        vectors = self.model.encode(prefixed, batch_size=self.spec.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


class StaticEncoder:
    """Mean of distilled token vectors, L2-normalized (a model2vec-style static model)."""

    def __init__(self, spec: EncoderSpec):
        from tokenizers import Tokenizer

        folder = Path(spec.path)
        try:
            self.vectors = np.load(folder / "vectors.npy")
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except FileNotFoundError as exc:
            raise EncoderError(f"static model folder {folder} is incomplete ({exc.filename} missing); delete it and rerun to distill again") from None
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.spec = spec
        self.model_id = spec.model_id
        self.dim = int(self.vectors.shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        prefixed = [self.spec.query_prefix + t for t in texts] if self.spec.query_prefix else list(texts)
        encodings = self.tokenizer.encode_batch(prefixed, add_special_tokens=False)
        ids = [e.ids[: self.spec.max_seq_length] for e in encodings]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        nonempty = lengths > 0
        if nonempty.any():
            flat = np.fromiter((t for i in ids for t in i), dtype=np.int64, count=int(lengths.sum()))
            starts = np.concatenate(([0], np.cumsum(lengths[nonempty])[:-1]))
            out[nonempty] = np.add.reduceat(self.vectors[flat], starts, axis=0) / lengths[nonempty, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def build_encoder(spec: EncoderSpec) -> Encoder:
    """The encoder a spec names.

    Raises:
        EncoderError: unknown backend, or a static folder that is incomplete.
    """
    if spec.backend == "transformer":
        return TransformerEncoder(spec)
    if spec.backend == "static":
        return StaticEncoder(spec)
    raise EncoderError(f"embed.backend={spec.backend!r} is unknown; use 'transformer' or 'static'")


def static_model_dir(cache_dir: str, model: str, dims: int) -> Path:
    """Folder of the static model distilled from ``model`` with ``dims`` dimensions."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("_")
    return Path(cache_dir) / f"{safe}-d{dims}-f{STATIC_FORMAT}"


def distill_static(transformer_path: str, target: Path, dims: int, batch_size: int = 512, show_progress: bool = False) -> Path:
    """Distill a static model from a local transformer (model2vec's recipe, offline); reuse it when cached.

    Every vocabulary token is run through the transformer as ``[CLS] token [SEP]``
    and mean-pooled (keeping only the token's own position measured worse: pairwise
    similarity correlation with the transformer 0.35 against 0.42); the token vectors are reduced by PCA to ``dims`` and weighted
    by SIF with a Zipf prior on the vocabulary rank (frequent tokens weigh less).

    Args:
        transformer_path: local sentence-transformers folder (with ``tokenizer.json``).
        target: output folder; written atomically, so concurrent callers never see half a model.
        dims: PCA dimensions (capped at the model's own dimension).
        batch_size: tokens per forward pass.
        show_progress: show a progress bar.

    Raises:
        EncoderError: the transformer has no fast tokenizer file.
    """
    if (target / "vectors.npy").is_file():
        return target
    import torch
    from sentence_transformers import SentenceTransformer
    from sklearn.decomposition import PCA

    from issuerisk.display import progress

    tokenizer_file = Path(transformer_path) / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise EncoderError(f"{transformer_path} has no tokenizer.json; the static backend needs a fast (tokenizers) tokenizer")
    st = SentenceTransformer(transformer_path, device="cpu")
    hf_model = st[0].auto_model
    tok = st.tokenizer
    vocab_size = len(tok)
    cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
    token_vectors = np.zeros((vocab_size, hf_model.config.hidden_size), dtype=np.float32)
    bar = progress(vocab_size, "distill static", "token", show_progress)
    with torch.inference_mode():
        for start in range(0, vocab_size, batch_size):
            ids = torch.arange(start, min(start + batch_size, vocab_size)).unsqueeze(1)
            parts = [ids] if cls_id is None else [torch.full_like(ids, cls_id), ids]
            if sep_id is not None:
                parts.append(torch.full_like(ids, sep_id))
            batch = torch.cat(parts, dim=1)
            hidden = hf_model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            token_vectors[start:start + len(ids)] = hidden.mean(dim=1).numpy()
            bar.update(len(ids))
    bar.close()
    dims = min(dims, token_vectors.shape[1])
    reduced = PCA(n_components=dims, svd_solver="full", random_state=0).fit_transform(token_vectors).astype(np.float32)
    inv_rank = 1.0 / np.arange(1, vocab_size + 1, dtype=np.float64)
    proba = inv_rank / inv_rank.sum()
    reduced *= (SIF_COEFFICIENT / (SIF_COEFFICIENT + proba)).astype(np.float32)[:, None]
    _save_static(target, reduced, tokenizer_file, {"source": transformer_path, "dims": dims, "format": STATIC_FORMAT, "sif": SIF_COEFFICIENT})
    return target


def _save_static(target: Path, vectors: np.ndarray, tokenizer_file: Path, meta: dict) -> None:
    """Write a static model folder atomically, so concurrent callers never see half a model."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "vectors.npy", vectors.astype(np.float32))
    shutil.copy(tokenizer_file, tmp / "tokenizer.json")
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "vectors.npy").is_file():
            raise


def aligned_static_dir(static_dir: Path, texts: int) -> Path:
    """Folder of ``static_dir``'s model aligned on ``texts`` sample texts."""
    return static_dir.with_name(f"{static_dir.name}-a{texts}")


def align_static(static_dir: Path, target: Path, texts: list[str], vectors: np.ndarray, query_prefix: str = "",
                 max_seq_length: int = 128, ridge: float = ALIGN_RIDGE) -> Path:
    """Map a distilled static model linearly onto its transformer's space; reuse it when cached.

    Mean pooling is linear, so the ridge regression ``W`` from the static model's
    (normalized) sentence vectors of sample texts to the transformer's vectors of
    the same texts can be folded into the token table: ``vectors @ W`` is again a
    static model, as fast as before, whose sentences land near the transformer's.
    On 2,000 held-out real issue texts (2,000 others to fit) it raised the
    correlation of pairwise similarities with the transformer from 0.34 to 0.68
    and the mean cosine to the transformer's vectors to 0.71 (bench/embed_cluster.py).

    Args:
        static_dir: the distilled model (:func:`distill_static`).
        target: output folder; written atomically.
        texts: sample texts (from the corpus being embedded).
        vectors: the transformer's normalized vectors of ``texts``.

    Raises:
        EncoderError: no texts, or texts and vectors of different lengths.
    """
    if (target / "vectors.npy").is_file():
        return target
    if not texts or len(texts) != len(vectors):
        raise EncoderError(f"aligning a static model needs texts with one transformer vector each, got {len(texts)} texts and {len(vectors)} vectors")
    encoder = StaticEncoder(EncoderSpec(backend="static", model="", path=str(static_dir), query_prefix=query_prefix, max_seq_length=max_seq_length))
    x = encoder.encode(texts).astype(np.float64)
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ np.asarray(vectors, dtype=np.float64))
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    _save_static(target, encoder.vectors @ w, static_dir / "tokenizer.json",
                 {"source": str(static_dir), "aligned_texts": len(texts), "texts_sha256": digest, "ridge": ridge, "format": STATIC_FORMAT})
    return target
