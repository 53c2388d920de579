"""A sentence-transformers model's transformer exported to ONNX, optionally quantized to int8, run by onnxruntime.

The export (torch's ONNX exporter, dynamic batch and sequence axes) and the dynamic int8 quantization
(onnxruntime.quantization: int8 weights, activations quantized per batch at run time) happen once per model and
machine: the files are cached outside the warehouse under ``<cache>/<model>-<weight hash>/`` (the hash of
:func:`issuerisk.encoding.models.model_identity`), so a changed model is exported again and several actors export
it once (a file lock). The encoder tokenizes with the model's own tokenizer, mean-pools the token states over the
attention mask and L2-normalizes, as the model's sentence-transformers pipeline does; models that pool otherwise are
refused.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import numpy as np

from issuerisk.encoding.models import model_identity

QUANTIZED = "model.int8.onnx"
EXPORTED = "model.onnx"
FUSED = "model.fused.onnx"


class OnnxBackendError(RuntimeError):
    """The model cannot run on the ONNX backend (pooling other than mean, or the export failed)."""


def _check_pooling(path: Path) -> None:
    modules = path / "modules.json"
    if not modules.is_file():
        return
    for module in json.loads(modules.read_text()):
        if module.get("type", "").endswith("Pooling"):
            config = json.loads((path / module["path"] / "config.json").read_text())
            if not config.get("pooling_mode_mean_tokens"):
                raise OnnxBackendError(
                    f"the model at {path} pools with {config}; the ONNX backend mean-pools only: set embed.backend "
                    "to torch for this model"
                )


def export(path: str, folder: Path, quantize: bool) -> Path:
    """The ONNX file of the model at ``path``, exported into ``folder`` unless it is there: fp32 with onnxruntime's
    fused operators (attention, skip layer normalization, bias GELU: the same vectors, 1.2x as fast here), or int8
    (quantized from the plain export) when ``quantize``."""
    target = folder / (QUANTIZED if quantize else FUSED)
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another actor exported it while this one waited
            return target
        plain = folder / EXPORTED
        if not plain.is_file():
            _export_fp32(path, plain)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            partial = folder / f".{QUANTIZED}.{os.getpid()}"
            quantize_dynamic(str(plain), str(partial), weight_type=QuantType.QInt8)
            os.replace(partial, target)
        else:
            _fuse(plain, target)
    return target


def _fuse(plain: Path, target: Path) -> None:
    """The plain export rewritten with onnxruntime's contrib operators (onnxscript's ORT fusions): one Attention
    node per layer instead of its matmuls, softmax and reshapes. A model none of whose patterns match is copied as
    it is."""
    import onnx_ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model = onnx_ir.load(str(plain))
    optimize_for_ort(model)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    onnx_ir.save(model, str(partial))
    os.replace(partial, target)


def _export_fp32(path: str, target: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    order = ("input_ids", "attention_mask", "token_type_ids")
    names = sorted(tokenizer.model_input_names, key=lambda n: order.index(n) if n in order else len(order))
    sample = tokenizer(["a first sample text", "and a second, longer sample text"], padding=True, return_tensors="pt")

    unknown = set(names) - {"input_ids", "attention_mask", "token_type_ids"}
    if unknown:
        raise OnnxBackendError(f"the tokenizer of {path} feeds {sorted(unknown)}; set embed.backend to torch")

    class LastHiddenState(torch.nn.Module):  # named arguments: the exporter maps the dynamic axes by them
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(**{n: given[n] for n in names}).last_hidden_state

    partial = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        torch.onnx.export(
            LastHiddenState().eval(),
            tuple(sample[n] for n in names),
            str(partial),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            opset_version=18,
            dynamo=True,
            external_data=False,
        )
    except Exception as exc:  # noqa: BLE001 (the exporter raises many kinds; the message says what to do)
        raise OnnxBackendError(
            f"exporting {path} to ONNX failed ({type(exc).__name__}: {str(exc)[:300]}); set embed.backend to torch"
        ) from exc
    os.replace(partial, target)


class OnnxEncoder:
    """Texts in, mean-pooled L2-normalized float32 rows out, through onnxruntime on CPU."""

    def __init__(self, spec, cache: str) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = Path(spec.path)
        _check_pooling(path)
        identity = model_identity(spec.model, spec.path if path.is_dir() else None)
        folder = Path(cache) / identity.replace("/", "__").replace("@sha256:", "-")
        model_file = export(spec.path, folder, quantize=spec.backend == "onnx-int8")
        options = ort.SessionOptions()
        options.intra_op_num_threads = spec.threads or 0
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(spec.path)
        self.spec = spec
        self.model_file = str(model_file)
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        prefixed = [self.spec.query_prefix + t for t in texts]
        order = np.argsort([-len(t) for t in prefixed], kind="stable")  # similar lengths share a batch: less padding
        out = np.empty((len(texts), 0), dtype=np.float32)
        rows = []
        for start in range(0, len(order), self.spec.batch_size):
            batch = [prefixed[i] for i in order[start : start + self.spec.batch_size]]
            tokens = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self.spec.max_seq_length, return_tensors="np"
            )
            feed = {name: tokens[name].astype(np.int64) for name in self.inputs}
            states = self.session.run(None, feed)[0]
            mask = tokens["attention_mask"][..., None].astype(np.float32)
            pooled = (states * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            rows.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
        if rows:
            out = np.concatenate(rows)[np.argsort(order, kind="stable")]
        return np.ascontiguousarray(out, dtype=np.float32)
