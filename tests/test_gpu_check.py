"""bench.gpu_check: one line and a JSON saying so where no GPU is visible; the whole check on a CUDA machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_DATA, REPO


def _gpu_check(out: Path, *args: str, hide_gpus: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if hide_gpus else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(out), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_without_a_gpu_it_says_so_writes_the_reason_and_exits_0(tmp_path):
    out = tmp_path / "nested" / "gpu_check.json"
    done = _gpu_check(out, hide_gpus=True)  # hidden, so this runs the same on a GPU machine
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no CUDA GPU: torch.cuda.is_available() is False"), done.stdout
    assert lines[0].endswith(f"nothing measured, wrote {out}")
    written = json.loads(out.read_text())
    assert set(written) == {"gpu", "reason"} and written["gpu"] is None
    assert "CUDA_VISIBLE_DEVICES=''" in written["reason"]


def test_peak_table_matches_the_specific_name_first():
    from bench.gpu_check import peak_tflops

    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA L40S") == 362.0
    assert peak_tflops("NVIDIA L4") == 121.0
    assert peak_tflops("NVIDIA GeForce RTX 4090") is None


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="needs the real corpus ../shared/data/lai2024-ml-issues")
def test_on_a_gpu_it_embeds_real_summaries_in_fp16_within_the_bound(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = _gpu_check(out, "--texts", "2000")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    embed = result["embed"]
    assert result["gpu"]["name"] and embed["dtype"] == "fp16" and embed["texts"] == 2000
    assert 0 < embed["share_of_bound"] <= 1
    assert embed["sequences_per_s"] == pytest.approx(2000 / embed["embed_s"], rel=0.01)
    cluster = result["cluster"]
    if cluster.get("cuml") is not None:
        assert cluster["points"] == 2000 and cluster["ari_cuml_vs_cpu"] > 0  # better than chance
