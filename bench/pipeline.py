"""``issuerisk run`` against BERTopic's defaults on the same real issues, cold processes, side by side.

Run ``.venv/bin/python -m bench.pipeline`` (``--subsets small,large``). Two subsets of
``../shared/data/lai2024-ml-issues``: *small* is every 25th repository file (about
1,570 issues), *large* whole repositories in a seeded order until about 9,400
issues. For each, in fresh processes:

* ours: ``issuerisk run FILES`` into a fresh warehouse with the default configuration, the stage times
  taken from the run's ledger row;
* BERTopic 0.17 with its defaults and the same MiniLM model on title + body (``fit_transform``), timed from
  the process start (imports included).

It prints wall times and their ratio, our per-stage breakdown, and beside them the quality of both
clusterings on the issues both clustered: noise share, clusters, agreement of the clusters with the issues'
own GitHub label kinds (NMI over defect/feature/question, labelled issues outside noise), and the share of
clustered issues in clusters that one repository dominates (> 50 %).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.stability import OUT, REAL_ISSUES, kind_agreement, label_kinds, label_names, read_repository
from issuerisk.stage import cores_busy, cpu_ticks

BERTOPIC_SCRIPT = r"""
import gzip, json, sys, time
t0 = time.perf_counter()
from bertopic import BERTopic
from sentence_transformers import SentenceTransformer
from issuerisk.encoding.models import packaged_minilm_path
files, out = sys.argv[1].split(","), sys.argv[2]
keys, docs = [], []
for f in files:
    repository = f.rsplit("/", 1)[1].removesuffix(".jsonl.gz").replace("__", "/")
    with gzip.open(f, "rt") as fh:
        for line in fh:
            o = json.loads(line)
            if "pull_request" in o:
                continue
            keys.append([repository, o["number"]])
            docs.append((o.get("title") or "") + "\n" + (o.get("body") or ""))
model = SentenceTransformer(packaged_minilm_path(), device="cpu")
topic_model = BERTopic(embedding_model=model)
topics, _ = topic_model.fit_transform(docs)
seconds = time.perf_counter() - t0
keywords = {str(t): [w for w, _ in topic_model.get_topic(t) or []] for t in set(topics) if t >= 0}
json.dump({"keys": keys, "labels": [int(t) for t in topics], "seconds": seconds, "keywords": keywords}, open(out, "w"))
"""


def subsets() -> dict[str, list[Path]]:
    """small: every 25th repository file from the 25th (1,571 issues, the issue's subset); large: whole repositories in
    a seeded order until about 9,400 issues; all: the whole corpus (40,933 issues)."""
    files = sorted(REAL_ISSUES.glob("*.jsonl.gz"))
    shuffled = files[:]
    random.Random(0).shuffle(shuffled)
    large, total = [], 0
    for f in shuffled:
        large.append(f)
        total += _issues(f)
        if total >= 9400:
            break
    return {"small": files[24::25], "large": large, "all": files}


def _issues(file: Path) -> int:
    import gzip

    with gzip.open(file, "rt") as fh:
        return sum(1 for line in fh if '"pull_request"' not in line)


def issuerisk(warehouse: Path, *args: str) -> float:
    """Run one ``issuerisk`` command in a fresh process on ``warehouse`` (the caller's ISSUERISK_* settings left out);
    its wall seconds.

    Raises:
        RuntimeError: the command failed (with the end of its stderr).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUERISK")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "issuerisk.cli", "--warehouse", str(warehouse), "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"issuerisk {' '.join(args[:1])} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def warehouse_tables(warehouse: Path):
    """The Delta tables of a bench warehouse (Arrow side)."""
    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables

    return ArrowTables(load_config(environ={"ISSUERISK_WAREHOUSE": str(warehouse)}))


def ours(files: list[Path], workdir: Path) -> dict:
    """Run ``issuerisk run`` cold into a fresh warehouse; wall time, stage times and the clustering's labels."""
    warehouse = workdir / "warehouse"
    ticks = cpu_ticks()
    seconds = issuerisk(warehouse, "run", *map(str, files))
    busy = cores_busy(ticks, cpu_ticks())
    tables = warehouse_tables(warehouse)
    row = next(r for r in tables.read("runs").to_pylist() if r["command"] == "run")
    metrics = json.loads(row["metrics_json"])
    clusters = tables.read("gold_clusters", where={"run_id": row["run_id"]}).to_pylist()
    quality = {
        r["measure"]: r["value"] for r in tables.read("gold_quality", where={"run_id": row["run_id"]}).to_pylist()
    }
    return {
        "seconds": seconds,
        "cores_busy": busy,
        "stages": {
            k: v["stage_seconds"]
            for k, v in metrics.items()
            if isinstance(v, dict) and "stage_seconds" in v and k != "run"
        },
        "cores": {k: v.get("cpu_cores_busy") for k, v in metrics.items() if isinstance(v, dict) and k != "run"},
        "labels": {(r["repository"], r["number"]): r["cluster"] for r in clusters},
        "stability": quality.get("stability_mean"),
    }


def stored_bertopic(files: list[Path]) -> Path:
    """Where BERTopic's result on ``files`` is kept in bench/out: by the files (names and sizes) and BERTopic's
    version, so a changed subset or library measures again."""
    import hashlib
    from importlib.metadata import version

    key = "\0".join([version("bertopic"), *(f"{f.name}:{f.stat().st_size}" for f in files)])
    return OUT / f"bertopic-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def bertopic(files: list[Path], workdir: Path, reuse: bool = False) -> dict:
    """BERTopic's defaults with MiniLM on title + body, in a fresh process: wall seconds, labels per issue and each
    topic's keywords. Each result is kept (:func:`stored_bertopic`); ``reuse`` takes the kept one when there is one
    (``measured_at`` says when it ran) instead of running BERTopic again: its side does not change with ours."""
    stored = stored_bertopic(files)
    if reuse and stored.is_file():
        kept = json.loads(stored.read_text())
        return {**kept, "labels": {(r, n): t for r, n, t in kept["labels"]}, "stored": True}
    out = workdir / "bertopic.json"
    t0, ticks = time.perf_counter(), cpu_ticks()
    proc = subprocess.run(
        [sys.executable, "-c", BERTOPIC_SCRIPT, ",".join(map(str, files)), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    seconds, busy = time.perf_counter() - t0, cores_busy(ticks, cpu_ticks())
    if proc.returncode != 0:
        raise RuntimeError(f"BERTopic failed: {proc.stderr[-2000:]}")
    data = json.loads(out.read_text())
    result = {
        "seconds": seconds,
        "cores_busy": busy,
        "labels": {(r, n): t for (r, n), t in zip(data["keys"], data["labels"])},
        "keywords": list(data["keywords"].values()),
        "measured_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    stored.write_text(json.dumps({**result, "labels": [[r, n, t] for (r, n), t in result["labels"].items()]}))
    return result


def issue_kinds(files: list[Path]) -> dict[tuple[str, int], str | None]:
    """Each issue's kind from its own GitHub labels (None when its labels name none)."""
    keys, names = [], []
    for f in files:
        repository, objects = read_repository(f)
        keys += [(repository, o["number"]) for o in objects]
        names += [label_names(o) for o in objects]
    return dict(zip(keys, label_kinds(names)))


def quality(labels: dict, keys: set, kinds: dict) -> dict:
    """Noise share, clusters, NMI with the label kinds (defect/feature/question) and repository-dominated share, on
    ``keys``."""
    from bench.quality import dominance

    keys = sorted(keys)
    lab = np.array([labels[k] for k in keys])
    nmi, labelled = kind_agreement(lab.tolist(), [kinds.get(k) for k in keys])
    _, dominated = dominance([{"repository": k[0]} for k in keys], lab)
    return {
        "noise": float((lab < 0).mean()),
        "clusters": len(set(lab.tolist()) - {-1}),
        "nmi_kinds": nmi,
        "labelled": labelled,
        "dominated": dominated,
    }


def _busy(cores: float | None) -> str:
    return "" if cores is None else f"{cores:.2f}"


def main(argv: list[str] | None = None) -> None:
    from issuerisk.display import table
    from issuerisk.stages import PIPELINE

    names = [stage.name for stage in PIPELINE]  # the stage-seconds columns, in pipeline order
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subsets", default="small,large", help="which subsets to run (small, large, all)")
    p.add_argument(
        "--reuse-bertopic",
        action="store_true",
        help="take BERTopic's side from its last run on the same files and version (bench/out) when there is one: "
        "its time is printed with the date it was measured (for ours only after a change; the whole corpus costs "
        "BERTopic about 20 minutes)",
    )
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    rows, runs, qualities = [], {}, []
    for name in args.subsets.split(","):
        files = subsets()[name]
        kinds = issue_kinds(files)
        with tempfile.TemporaryDirectory(dir=OUT) as tmp:
            work = Path(tmp)
            a = ours(files, work)
            b = bertopic(files, work, args.reuse_bertopic)
        both = set(a["labels"]) & set(b["labels"])
        rows.append(
            [
                name,
                f"{len(kinds):,} ({len(files)} repositories)",
                f"{a['seconds']:.0f}",
                f"{b['seconds']:.0f}" + (f" (stored, {b['measured_at']})" if b.get("stored") else ""),
                f"{a['seconds'] / b['seconds']:.2f}",
                _busy(a["cores_busy"]),
                _busy(b["cores_busy"]),
            ]
        )
        runs[name] = a
        for side, result in (("issuerisk", a), ("BERTopic", b)):
            q = quality(result["labels"], both, kinds)
            qualities.append(
                [
                    name,
                    side,
                    f"{q['noise']:.3f}",
                    q["clusters"],
                    f"{q['nmi_kinds']:.3f}",
                    q["labelled"],
                    f"{q['dominated']:.3f}",
                    "" if result.get("stability") is None else f"{result['stability']:.3f}",
                ]
            )
        print(f"{name}: ours {a['seconds']:.0f} s, BERTopic {b['seconds']:.0f} s", flush=True)
    table(
        "issuerisk run vs BERTopic defaults (cold processes, same issues)",
        ["subset", "issues", "issuerisk s", "BERTopic s", "ratio", "issuerisk cores busy", "BERTopic cores busy"],
        rows,
    )
    table(
        f"issuerisk stage seconds and cores busy (of {os.cpu_count()}, whole machine)",
        ["stage", *(f"{subset} {what}" for subset in runs for what in ("s", "cores"))],
        [
            [
                stage,
                *(v for a in runs.values() for v in (f"{a['stages'].get(stage, 0):.1f}", _busy(a["cores"].get(stage)))),
            ]
            for stage in names
        ],
    )
    table(
        "quality on the issues both clustered",
        [
            "subset",
            "side",
            "noise",
            "clusters",
            "NMI label kinds",
            "labelled",
            "repo-dominated share",
            "stability mean",
        ],
        qualities,
    )


if __name__ == "__main__":
    main()
