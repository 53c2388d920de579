"""Issue kinds with a contrastively fine-tuned encoder (SetFit-style), judged on repositories it never saw.

Run ``.venv/bin/python -m bench.kinds_setfit`` (``--folds 0,1``, ``--per-kind 500``, ``--head 3000``,
``--epochs 1``). The labelled issues of the shared corpus (``kinds.reference_corpus``, as the classify stage
reads them) are split by the classify stage's own repository-grouped 5-fold (:func:`kinds.grouped_folds`,
seed 0), and on each fold asked for, beside each other:

- ``shipped, all``: the classifier as the reference-corpus path ships it (TF-IDF and hand features, logistic
  regression), trained on every labelled issue of the fold's training repositories;
- ``shipped, head sample``: the same, trained on the head sample only (``--head`` issues of the training
  repositories, seeded), so the rows below compare with it on equal data;
- ``frozen MiniLM + LR``, ``tuned MiniLM + LR``: SetFit's head (a logistic regression) on the encoder's
  embeddings before and after fine-tuning;
- ``shipped + frozen``, ``shipped + tuned``: the classifier's text features with those embeddings added.

Fine-tuning: a class-balanced sample of ``--per-kind`` defects, features and questions of the training
repositories, supervised contrastive loss (temperature 0.1) on the normalized embeddings, batches of 32, AdamW
at 2e-5, ``--epochs`` passes, texts of title and body cut at 128 tokens. These settings are set once, before
any figure was seen; none was tuned on the folds it reports. Macro-F1 is over defect/feature/question.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from issuerisk.analysis.classify import reference_examples
from issuerisk.analysis.kinds import CORE_KINDS, grouped_folds, predict, score_report, train
from issuerisk.conf.loader import load_config
from issuerisk.encoding.models import resolve_model

MAX_TOKENS = 128
BATCH = 32
TEMPERATURE = 0.1
LEARNING_RATE = 2e-5


def text_of(title: str, body: str) -> str:
    return f"{title}\n{body[:1500]}"


def encoder():
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    cfg = load_config()
    model = SentenceTransformer(resolve_model(cfg.embed.model, cfg.embed.model_path), device="cpu")
    model.max_seq_length = MAX_TOKENS
    return model


def embed(model, texts: list[str]) -> np.ndarray:
    return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def supervised_contrastive(embeddings, labels, temperature: float = TEMPERATURE):
    """SupCon (Khosla et al. 2020) over one batch of normalized embeddings: each issue is pulled toward the
    batch's issues of its kind and pushed from the others."""
    import torch

    similarity = embeddings @ embeddings.T / temperature
    eye = torch.eye(len(labels), dtype=torch.bool)
    similarity = similarity.masked_fill(eye, -1e9)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    counts = positive.sum(1)
    keep = counts > 0
    return -((log_prob * positive).sum(1)[keep] / counts[keep]).mean()


def fine_tune(model, texts: list[str], kinds: list[str], epochs: int, seed: int = 0) -> float:
    """Fine-tune ``model`` in place; returns the seconds it took."""
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    ids = {k: i for i, k in enumerate(sorted(set(kinds)))}
    labels = torch.tensor([ids[k] for k in kinds])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    model.train()
    rng = random.Random(seed)
    order = list(range(len(texts)))
    for epoch in range(epochs):
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            features = model.tokenize([texts[i] for i in batch])
            vectors = F.normalize(model(features)["sentence_embedding"], dim=-1)
            loss = supervised_contrastive(vectors, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        print(
            f"  epoch {epoch + 1}: mean loss {np.mean(losses):.3f} ({time.perf_counter() - started:.0f} s)", flush=True
        )
    model.eval()
    return time.perf_counter() - started


def balanced(rows: list[int], kinds: list[str], per_kind: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    chosen = []
    for kind in CORE_KINDS:
        of_kind = [i for i in rows if kinds[i] == kind]
        chosen += rng.sample(of_kind, min(per_kind, len(of_kind)))
    return sorted(chosen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", default="0", help="comma-separated fold numbers of the grouped 5-fold")
    parser.add_argument("--per-kind", type=int, default=500)
    parser.add_argument("--head", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)

    cfg = load_config()
    pairs, kinds, groups, _ = reference_examples(cfg, set())
    texts = [text_of(t, b) for t, b in pairs]
    folds = grouped_folds(groups, cfg.kinds.eval_folds, seed=0)
    print(f"{len(pairs):,} labelled issues of {len(set(groups))} repositories; {len(folds)} repository-grouped folds")
    results = []
    for fold in (int(f) for f in args.folds.split(",")):
        train_rows, test_rows = folds[fold]
        head = sorted(random.Random(fold).sample(list(train_rows), min(args.head, len(train_rows))))
        truth = [kinds[i] for i in test_rows]
        print(f"fold {fold}: {len(train_rows):,} training issues, {len(test_rows):,} test issues", flush=True)

        def scored(name, predicted, seconds):
            report = score_report(truth, predicted, np.ones(len(truth)), CORE_KINDS)
            per = report["per_class"]
            results.append((fold, name, report["macro_f1_core"], *(per[k]["f1"] for k in CORE_KINDS), seconds))
            print(f"  {name}: macro-F1 {report['macro_f1_core']:.3f}", flush=True)

        t0 = time.perf_counter()
        shipped = train([pairs[i] for i in train_rows], None, [kinds[i] for i in train_rows])
        scored("shipped, all", predict(shipped, [pairs[i] for i in test_rows])[0], time.perf_counter() - t0)
        t0 = time.perf_counter()
        shipped_head = train([pairs[i] for i in head], None, [kinds[i] for i in head])
        scored(
            "shipped, head sample", predict(shipped_head, [pairs[i] for i in test_rows])[0], time.perf_counter() - t0
        )

        model = encoder()
        for name, tuned_s in (("frozen", 0.0), ("tuned", None)):
            if tuned_s is None:
                tune = balanced(list(train_rows), kinds, args.per_kind, seed=fold)
                print(f"  fine-tuning on {len(tune):,} issues", flush=True)
                tuned_s = fine_tune(model, [texts[i] for i in tune], [kinds[i] for i in tune], args.epochs, seed=fold)
            t0 = time.perf_counter()
            head_vectors = embed(model, [texts[i] for i in head])
            test_vectors = embed(model, [texts[i] for i in test_rows])
            embed_s = time.perf_counter() - t0
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, random_state=0)
            lr.fit(head_vectors, [kinds[i] for i in head])
            scored(f"{name} MiniLM + LR", lr.predict(test_vectors).tolist(), tuned_s + embed_s)
            both = train([pairs[i] for i in head], head_vectors, [kinds[i] for i in head])
            scored(
                f"shipped + {name}", predict(both, [pairs[i] for i in test_rows], test_vectors)[0], tuned_s + embed_s
            )

    print()
    print("| fold | method | macro-F1 | defect F1 | feature F1 | question F1 | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for fold, name, macro, d, f, q, seconds in results:
        print(f"| {fold} | {name} | {macro:.3f} | {d:.3f} | {f:.3f} | {q:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
