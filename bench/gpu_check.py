"""GPU readiness: fp16 embedding of real summaries against the GPU's FLOP bound, and cuML against the CPU backend.

    .venv/bin/python -m bench.gpu_check [--texts 20000] [--out bench/out/gpu_check.json]

On a machine with a CUDA GPU it summarizes ``--texts`` real issues of the corpus
(../shared/data/lai2024-ml-issues) with the configured extractive summarizer,
embeds them with the configured model (``embed.model``, loaded as an embed actor
loads it: fp16 when ``embed.fp16_on_gpu``) and reports sequences/s against the
bound the GPU's dense fp16 peak sets (FLOPs per token = 2 x the parameters outside
the embedding tables; attention scores left out). The peak comes from a table by
GPU name, or from a timed fp16 matmul for a GPU not in it. Where cuML imports it
clusters the same vectors with the ``cuml`` and ``cpu`` backends (one seeded
run each, ``cluster`` config) and gives the ARI of their labels. Everything goes
into one JSON file, whose path is printed. It takes under 8 minutes on one GPU.

Without a CUDA GPU it prints one line saying so, writes ``{"gpu": null, "reason": ...}``
and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "gpu_check.json"
# Dense fp16 tensor-core peaks (TFLOP/s, no sparsity) from the vendor's datasheets; first match of the
# device name wins, so the more specific names come first. A GPU not here is measured (fp16_matmul_tflops).
PEAK_FP16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("T4", 65.0),
)


def cuda_missing() -> str | None:
    """Why no CUDA GPU can be used here, or None when one can."""
    try:
        import torch
    except ImportError as exc:
        return f"torch does not import ({exc})"
    if not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, {build}; "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )
    return None


def fp16_matmul_tflops(size: int = 8192, repeats: int = 20) -> float:
    """This GPU's measured fp16 matrix-multiply rate."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.float16)
    b = torch.randn(size, size, device="cuda", dtype=torch.float16)
    a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e12


def peak_tflops(name: str) -> float | None:
    """The table's dense fp16 peak for a device name, or None when the GPU is not in it."""
    return next((tflops for key, tflops in PEAK_FP16_TFLOPS if key in name), None)


def parameter_counts(module: Any) -> tuple[int, int]:
    """(all parameters, those in embedding tables): a table lookup costs no multiply-adds."""
    import torch

    total = sum(p.numel() for p in module.parameters())
    tables = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Embedding))
    return total, tables


def token_counts(tokenizer: Any, texts: list[str], max_length: int, batch_size: int) -> tuple[float, float]:
    """Mean tokens per text (capped at ``max_length``) and mean tokens computed per text once sentence-transformers
    sorts the texts by length and pads each batch to its longest."""
    lengths = np.sort([min(len(ids), max_length) for ids in tokenizer(texts)["input_ids"]])[::-1]
    padded = sum(int(lengths[i]) * len(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size))
    return float(lengths.mean()), padded / len(lengths)


def embed_check(texts: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """Embed ``texts`` on the GPU as an embed actor does; the figures against the FLOP bound, and the vectors."""
    import torch

    from issuerisk.conf import load_config
    from issuerisk.encoding.encoders import PoolPlan, build_encoder, encoder_spec

    cfg = load_config().embed.model_copy(update={"backend": "torch"})  # fp16 on the GPU
    spec = encoder_spec(cfg, PoolPlan(actors=1, num_cpus=1, num_gpus=1, device="cuda", threads=1))
    t0 = time.perf_counter()
    encoder = build_encoder(spec)
    load_s = time.perf_counter() - t0
    encoder.encode(texts[:1024])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    vectors = encoder.encode(texts)
    embed_s = time.perf_counter() - t0
    transformer = encoder.model[0].auto_model
    total, tables = parameter_counts(transformer)
    tokens, padded = token_counts(
        encoder.model.tokenizer, [spec.query_prefix + t for t in texts], spec.max_seq_length, spec.batch_size
    )
    name = torch.cuda.get_device_name(0)
    measured = fp16_matmul_tflops()
    listed = peak_tflops(name)
    peak = listed or measured
    flops_per_sequence = 2.0 * (total - tables) * tokens
    rate = len(texts) / embed_s
    figures = {
        "model": cfg.model,
        "dtype": "fp16" if spec.fp16 else "fp32",
        "parameters": total,
        "embedding_table_parameters": tables,
        "dim": int(vectors.shape[1]),
        "max_seq_length": spec.max_seq_length,
        "batch_size": spec.batch_size,
        "load_s": round(load_s, 2),
        "texts": len(texts),
        "tokens_per_text": round(tokens, 1),
        "padded_tokens_per_text": round(padded, 1),
        "embed_s": round(embed_s, 3),
        "sequences_per_s": round(rate, 1),
        "peak_fp16_tflops": peak,
        "peak_source": "datasheet table" if listed else "measured fp16 matmul",
        "fp16_matmul_tflops_measured": round(measured, 1),
        "flops_per_sequence": flops_per_sequence,
        "bound_sequences_per_s": round(peak * 1e12 / flops_per_sequence, 1),
        "share_of_bound": round(rate * flops_per_sequence / (peak * 1e12), 4),
    }
    return figures, vectors


def cluster_check(vectors: np.ndarray) -> dict[str, Any]:
    """One seeded run of the ``cuml`` and the ``cpu`` backend on the same vectors, and the ARI of their labels
    (noise counted as a label); ``{"cuml": None, "reason": ...}`` where cuML cannot run."""
    from sklearn.metrics import adjusted_rand_score

    from issuerisk.clustering.backends import ClusterBackendError, enable_jit_cache, get_backend, single_run
    from issuerisk.conf import load_config
    from issuerisk.ray_tasks.cluster import jit_cache_dir

    cfg = load_config()
    try:
        cuml = get_backend("cuml")
    except ClusterBackendError as exc:
        return {"cuml": None, "reason": str(exc)}
    enable_jit_cache(jit_cache_dir(cfg))
    runs = {}
    for backend in (cuml, get_backend("cpu")):
        t0 = time.perf_counter()
        result = single_run(
            backend, backend.prepare(vectors, cfg.cluster), cfg.cluster, cfg.project.seed, with_coords=False
        )
        runs[backend.name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "clusters": result.n_clusters,
            "noise_share": round(float(np.mean(result.labels == -1)), 4),
            "labels": result.labels,
        }
    ari = float(adjusted_rand_score(runs["cpu"].pop("labels"), runs["cuml"].pop("labels")))
    return {**runs, "points": len(vectors), "seed": cfg.project.seed, "ari_cuml_vs_cpu": round(ari, 4)}


def check(texts: int) -> dict[str, Any]:
    """The whole check on this machine's first CUDA GPU."""
    import torch

    from bench.scale import real_summaries

    t0 = time.perf_counter()
    props = torch.cuda.get_device_properties(0)
    summaries = real_summaries(texts)
    summarize_s = time.perf_counter() - t0
    embed, vectors = embed_check(summaries)
    return {
        "gpu": {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "torch": torch.__version__,
        },
        "summaries": {
            "texts": len(summaries),
            "seconds": round(summarize_s, 1),
            "source": "real issues, extractive summarizer (config)",
        },
        "embed": embed,
        "cluster": cluster_check(vectors),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=20_000, help="real issue summaries to embed and cluster")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    reason = cuda_missing()
    if reason:
        args.out.write_text(json.dumps({"gpu": None, "reason": reason}, indent=2) + "\n")
        print(f"no CUDA GPU: {reason}; nothing measured, wrote {args.out}")
        return
    result = check(args.texts)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    e, c = result["embed"], result["cluster"]
    print(
        f"{result['gpu']['name']}: {e['model']} {e['dtype']} {e['sequences_per_s']:,.0f} sequences/s at "
        f"{e['tokens_per_text']} tokens, "
        f"{e['share_of_bound']:.1%} of the {e['peak_fp16_tflops']:.0f} TFLOP/s bound "
        f"({e['bound_sequences_per_s']:,.0f}/s); "
        + (
            f"cuML {c['cuml']['seconds']} s vs CPU {c['cpu']['seconds']} s, ARI {c['ari_cuml_vs_cpu']}"
            if c.get("cuml")
            else f"no cuML: {c['reason']}"
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
