"""The extractive summarizer on realistic synthetic bodies and on real issues of the Lai et al. (2024) data."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from issuerisk.summarizers import without_field_labels
from issuerisk.summarizers.extractive import clip_body, error_lines, summarize

TEMPLATE_BODY = """<!-- Please fill in this bug report template to ensure a timely and thorough response. -->
## 🐛 Bug
A clear and concise description of what the bug is.
Training crashes with CUDA out of memory after the first epoch when I use `torch.nn.DataParallel` on two GPUs.

## To Reproduce
Steps to reproduce the behavior:
1. Run `python train.py --batch-size 64`
2. Wait for the first validation step

```
Epoch 1: 100%|██████████| 500/500 [03:12<00:00,  2.60it/s]
2021-03-04 10:22:16.444939: I tensorflow/core/platform/cpu_feature_guard.cc:193] This binary is optimized
Traceback (most recent call last):
  File "train.py", line 120, in <module>
    main()
  File "train.py", line 98, in main
    loss = model(images).mean()
  File "/opt/conda/lib/python3.8/site-packages/torch/nn/modules/module.py", line 727, in _call_impl
    result = self.forward(*input, **kwargs)
  File "/work/models/resnet.py", line 44, in forward
    x = torch.nn.functional.conv2d(x, self.weight)
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 10.76 GiB total capacity)
```

## Expected behavior
Validation should run with the same memory as training.

## Environment
 - PyTorch Version: 1.7.1
 - OS: Ubuntu 18.04
 - CUDA/cuDNN version: 11.0
 - GPU models and configuration: 2x RTX 2080 Ti

## Checklist
- [x] I searched existing issues
- [ ] I am willing to submit a PR
"""

RAW_TF_LOG = """Hello, when I run infer.py with the checkpoint I get exceptions.

full stack trace:

WARNING:tensorflow:From /envs/lib/python3.9/site-packages/tensorflow/python/compat/v2_compat.py:107: disable_resource_variables is deprecated
INFO:tensorflow:Restoring parameters from ./tmp/checkpoint2/model.ckpt-01104395
2022-07-28 11:22:16.479388: W tensorflow/core/framework/op_kernel.cc:1745] OP_REQUIRES failed at save_restore_v2_ops.cc:228 : NOT_FOUND: Key bias not found in checkpoint
Traceback (most recent call last):
  File "/envs/lib/python3.9/site-packages/tensorflow/python/client/session.py", line 1377, in _do_call
    return fn(*args)
tensorflow.python.framework.errors_impl.NotFoundError: Key SimpleModel/OutputLogits/bias not found in checkpoint
"""


def test_template_body_keeps_title_error_and_api_and_drops_boilerplate():
    """Synthetic issue in the PyTorch template: boilerplate, logs, environment and checklist go; the error stays."""
    summary = summarize("OOM in validation with DataParallel", TEMPLATE_BODY, 96)

    assert summary.startswith("OOM in validation with DataParallel.")
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in summary
    assert "(in forward)" in summary
    assert "torch.nn.DataParallel" in summary
    for noise in (
        "clear and concise",
        "Steps to reproduce",
        "Ubuntu",
        "RTX",
        "[x]",
        "searched existing",
        "it/s",
        "cpu_feature_guard",
        "Epoch 1",
    ):
        assert noise not in summary
    assert len(summary.split()) <= 96


def test_unfenced_log_keeps_the_exception_and_drops_log_lines():
    """Synthetic TensorFlow log pasted without a code fence."""
    summary = summarize("checkpoint exception", RAW_TF_LOG, 96)

    assert (
        "tensorflow.python.framework.errors_impl.NotFoundError: Key SimpleModel/OutputLogits/bias not found in "
        "checkpoint (in _do_call)" in summary
    )
    assert "disable_resource_variables" not in summary
    assert "Restoring parameters" not in summary


def test_code_line_with_the_framework_call_is_kept_when_it_carries_the_error():
    """Synthetic: a short snippet whose API call is the subject of the error."""
    body = (
        "Calling the layer fails.\n\n```python\nimport tensorflow as tf\nx = tf.keras.layers.Dense(3)(tf.zeros([2, "
        "0]))\n```\n\nValueError: The last dimension of the inputs to a Dense layer should be defined. Found "
        "None.\n"
    )
    summary = summarize("Dense on empty input", body, 96)

    assert "Error: ValueError: The last dimension of the inputs to a Dense layer should be defined" in summary
    assert "Code: x = tf.keras.layers.Dense(3)(tf.zeros([2, 0]))" in summary
    assert "import tensorflow" not in summary


def test_empty_body_gives_the_title():
    assert summarize("  Add   support for ONNX export ", None, 96) == "Add support for ONNX export"
    assert summarize("Add support for ONNX export", "", 96) == "Add support for ONNX export"


@pytest.mark.parametrize("budget", [8, 20, 50])
def test_budget_is_a_hard_limit(budget):
    words = summarize(
        "A fairly long title about a segmentation fault in the data loader", TEMPLATE_BODY * 3, budget
    ).split()
    assert len(words) <= budget + 1


def test_deterministic():
    assert summarize("t", TEMPLATE_BODY, 64) == summarize("t", TEMPLATE_BODY, 64)


def test_error_lines_and_clip_body():
    assert error_lines(TEMPLATE_BODY) == [
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 10.76 GiB total capacity) (in forward)"
    ]
    long = "a" * 50 + "b" * 50
    assert clip_body(long, head=10, tail=5) == "a" * 10 + "\n" + "b" * 5
    assert clip_body(long, head=100, tail=5) == long


def _real_issue(real_issues_dir, repo_file: str, number: int) -> dict:
    with gzip.open(real_issues_dir / repo_file, "rt") as fh:
        for line in fh:
            issue = json.loads(line)
            if issue["number"] == number:
                return issue
    raise LookupError(f"{repo_file} has no issue {number}")


@pytest.mark.parametrize(
    ("repo_file", "number", "expected"),
    [
        (
            "BloodAxe__pytorch-toolbelt.jsonl.gz",
            51,
            [
                "ValueError: Target size (torch.Size([5, 1, 256, 256])) must be the same as input size",
                "binary_cross_entropy_with_logits",
            ],
        ),
        ("DeepLabCut__DeepLabCut.jsonl.gz", 1461, ["AttributeError: module 'tensorflow.compat' has no attribute 'v1'"]),
        (
            "BindsNET__bindsnet.jsonl.gz",
            460,
            ["RuntimeError: addmm: matrices expected, got 3D tensor", "SparseConnection"],
        ),
        (
            "1adrianb__pytorch-estimate-flops.jsonl.gz",
            2,
            ["ValueError: not enough values to unpack (expected 4, got 2)", "LSTM"],
        ),
    ],
)
def test_real_issues_keep_error_and_api(real_issues_dir, repo_file, number, expected):
    """Real issue texts: the summary keeps the exception and the framework API the issue names."""
    issue = _real_issue(real_issues_dir, repo_file, number)
    summary = summarize(issue["title"], issue["body"], 96)
    assert summary.startswith(issue["title"].strip()[:30])
    for text in expected:
        assert text in summary
    assert len(summary.split()) <= 97


def test_real_tracebacks_keep_their_exception_type(real_issues_dir):
    """Over every real issue with a Python traceback in two repositories, the final exception type survives."""
    final_exception = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)):", re.M)
    checked = kept = 0
    for repo_file in ("DeepLabCut__DeepLabCut.jsonl.gz", "ultralytics__yolov3.jsonl.gz"):
        with gzip.open(real_issues_dir / repo_file, "rt") as fh:
            for line in fh:
                issue = json.loads(line)
                body = issue.get("body") or ""
                if "Traceback (most recent call last)" not in body:
                    continue
                found = final_exception.findall(body)
                if not found:
                    continue
                checked += 1
                summary = summarize(issue["title"], body, 96)
                kept += any(name.rsplit(".", 1)[-1] in summary for name in found)
    assert checked > 50
    assert kept / checked >= 0.9, f"only {kept} of {checked} summaries keep an exception type"


def test_r2_puts_the_failure_first_errors_then_api_calls_then_versions():
    got = summarize("Training crashes with CUDA OOM", TEMPLATE_BODY, 96)
    error, api, env = (
        got.index("Error: RuntimeError: CUDA out of memory"),
        got.index("API: torch.nn.DataParallel"),
        got.index("Env: torch 1.7.1"),
    )
    sentence = got.index("Validation should run with the same memory")
    assert error < api < env < sentence
    assert "ubuntu 18.04" in got


def test_r1_keeps_the_earlier_order_without_api_and_env_lines():
    got = summarize("Training crashes with CUDA OOM", TEMPLATE_BODY, 96, rules="r1")
    assert "Error: RuntimeError: CUDA out of memory" in got and "API:" not in got and "Env:" not in got


def test_unknown_rules_are_named():
    with pytest.raises(ValueError, match="summarize.rules='r9' is unknown"):
        summarize("t", "b", 10, rules="r9")


def test_field_labels_are_left_out_of_the_words_keywords_are_counted_on():
    got = summarize("Training crashes with CUDA OOM", TEMPLATE_BODY, 96)
    words = without_field_labels(got)
    assert re.search(r"\b(?:Error|API|Env):", got) and not re.search(r"\b(?:Error|API|Env|Code):", words)
    for kept in ("RuntimeError: CUDA out of memory", "torch.nn.DataParallel", "torch 1.7.1", "ubuntu 18.04"):
        assert kept in words  # an exception's own "...Error:" and every fact's content stay
    llm = "Symptom: crash on save\nTrigger: torch.save\nComponent: serialization\nEnvironment: not given"
    assert without_field_labels(llm) == "crash on save torch.save serialization not given"
