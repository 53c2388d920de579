"""The CPU encoder backends judged by the answer: torch fp32 against ONNX fp32 and ONNX int8 (real issues).

Run ``.venv/bin/python -m bench.encoder_backends`` (``--issues 2000``, ``--runs 20``). A seeded sample of real
issues is turned into the texts the pipeline embeds (``bench.stability.pipeline_texts``); each backend embeds them
in this process on every core (texts/s, after the model is loaded and, for ONNX, exported: the one-off export and
quantization seconds are printed apart), and the consensus clusters each backend's vectors with the same seeds.
Printed per backend: texts/s and its speed-up over torch fp32, the cosine of its vectors to torch fp32's, the
adjusted Rand index of its clustering to torch fp32's (noise a label) beside the ceiling (torch fp32 with a disjoint
seed set: what a different seed alone changes), the noise share and clusters, and the NMI of the clusters with the
issues' own label kinds. The sample is drawn from the repositories outside bench.pipeline's subsets.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from bench.stability import (
    consensus_labels,
    describe,
    held_out_files,
    kind_agreement,
    label_kinds,
    pipeline_texts,
    real_sample,
)


def encode(backend: str, texts: list[str], cache: str) -> tuple[np.ndarray, float, float]:
    """(vectors, texts per second, seconds to build the encoder: load, and export for ONNX)."""
    from issuerisk.conf.settings import EmbedConfig
    from issuerisk.encoding.encoders import PoolPlan, build_encoder, encoder_spec

    plan = PoolPlan(actors=1, num_cpus=os.cpu_count(), num_gpus=0, device="cpu", threads=os.cpu_count())
    t0 = time.perf_counter()
    encoder = build_encoder(encoder_spec(EmbedConfig(backend=backend, onnx_cache_dir=cache), plan))
    built = time.perf_counter() - t0
    encoder.encode(texts[:64])  # warm
    t0 = time.perf_counter()
    vectors = encoder.encode(texts)
    return vectors, len(texts) / (time.perf_counter() - t0), built


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import adjusted_rand_score

    from issuerisk.clustering.backends import CpuBackend
    from issuerisk.conf.settings import ClusterConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    corpus = real_sample(0, exclude=held_out_files())
    issues = corpus[: args.issues]
    texts = pipeline_texts(issues, corpus)
    kinds = label_kinds([r["labels"] for r in issues])
    params = ClusterConfig()
    first, second = list(range(args.runs)), list(range(args.runs, 2 * args.runs))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="issuerisk-onnx-") as cache:
        for backend in ("torch", "onnx", "onnx-int8"):
            vectors, rate, built = encode(backend, texts, cache)
            labels, _, seconds = consensus_labels(CpuBackend().prepare(vectors, params), params, first)
            rows[backend] = (vectors, rate, built, labels)
            print(f"{backend}: {rate:.1f} texts/s, built in {built:.0f} s, consensus {seconds:.0f} s", flush=True)
        reference, _, _, labels_ref = rows["torch"]
        ceiling, _, _ = consensus_labels(CpuBackend().prepare(reference, params), params, second)
    print(f"\n{args.issues:,} real issues (repositories outside bench.pipeline's subsets), consensus of {args.runs}\n")
    print(
        "| backend | texts/s | speed-up | build s | cosine to torch fp32 (mean / min) | ARI to torch fp32 | noise "
        "| clusters | kind NMI |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base_rate = rows["torch"][1]
    for backend, (vectors, rate, built, labels) in rows.items():
        cosine = (vectors * reference).sum(1)
        clusters, noise, _ = describe(labels)
        nmi, _ = kind_agreement(labels, kinds)
        print(
            f"| {backend} | {rate:.1f} | {rate / base_rate:.2f} | {built:.0f} "
            f"| {cosine.mean():.4f} / {cosine.min():.4f} | {adjusted_rand_score(labels_ref, labels):.3f} "
            f"| {noise:.3f} | {clusters} | {nmi:.3f} |"
        )
    clusters, noise, _ = describe(ceiling)
    nmi, _ = kind_agreement(ceiling, kinds)
    print(
        f"| torch fp32, seeds {second[0]}-{second[-1]} (the ceiling) | | | | 1 | "
        f"{adjusted_rand_score(labels_ref, ceiling):.3f} | {noise:.3f} | {clusters} | {nmi:.3f} |"
    )


if __name__ == "__main__":
    main()
