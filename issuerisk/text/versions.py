"""The PyTorch, TensorFlow and Keras versions an issue reports, read from its text (pure code).

An issue reports the version it ran in many spellings; each is one rule here, named in ``where``:

- ``requirement``: a pinned requirement, ``torch==1.13.1``, ``tensorflow-gpu==2.4.0``;
- ``pip show``: ``Name: torch`` followed by ``Version: 1.9.0``;
- ``version attribute``: ``torch.__version__`` / ``tf.__version__`` and the value printed after it;
- ``mention``: the framework's name, optionally "version", then the number, on one line: ``PyTorch version: 1.7.0``
  (``collect_env``), ``TensorFlow version (use command below): v2.4.0-rc4-71-g… 2.4.0`` (TensorFlow's issue template),
  ``torch    1.9.0+cu111`` (``pip list``), ``pytorch   1.7.1   py3.8_cuda11.0`` (``conda list``), ``TF 1.15``,
  ``tf2``.

Versions are normalised to major.minor (``1.7.0+cu110`` → ``1.7``); TensorFlow's bare major (``TF2``) is kept as
``2``. Not versions of a framework: its companion packages (``torchvision``, ``tensorflow-addons``,
``pytorch-lightning``, ``tf.keras`` …), documentation links (``pytorch.org/docs/1.7.0``), ranges (``torch>=1.7``),
an issue template's placeholders (``PyTorch Version (e.g., 1.0):``) and implausible majors (``torch 10``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TORCH = r"(?:py)?torch"
_TF = r"tensorflow(?:[-_](?:gpu|cpu))?|tf(?:[-_]nightly(?:[-_]gpu)?)?"
_KERAS = r"keras"
_NAME = rf"(?<![\w.\-/])(?P<name>{_TORCH}|{_TF}|{_KERAS})(?![A-Za-z_])(?![.\-_/][A-Za-z])"
_NUMBER = r"v?(?P<number>\d+(?:\.\d+){0,3})(?![\d])"
_PLACEHOLDER = re.compile(r"\((?:e\.g\.?|eg|for example|ex)[^)\n]*\)|\[(?:e\.g\.?|eg)[^\]\n]*\]", re.I)

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("requirement", re.compile(rf"{_NAME}\s*==\s*{_NUMBER}", re.I)),
    (
        "pip show",
        re.compile(rf"Name:\s*(?P<name>torch|tensorflow(?:-gpu|-cpu)?|keras)\s*\n\s*Version:\s*{_NUMBER}", re.I),
    ),
    (
        "version attribute",
        re.compile(
            rf"(?<![\w])(?P<name>torch|tf|tensorflow|keras)\.__version__\W{{0,40}}?(?:Out\[\d+\]:\s*)?['\"]?{_NUMBER}",
            re.I,
        ),
    ),
    (
        "mention",
        re.compile(rf"{_NAME}[ \t]*(?:version)?[ \t]*(?:\([^)\n]{{0,40}}\))?[ \t]*[:=\-]?[ \t]*{_NUMBER}", re.I),
    ),
)
"""(where, pattern) in the order they are tried; a span matched by one rule is not matched again."""

_MAJORS = {"pytorch": (0, 1, 2), "tensorflow": (0, 1, 2), "keras": (0, 1, 2, 3)}


class Version(NamedTuple):
    """One framework version an issue reports, where it was found and the text it was read from."""

    framework: str
    version: str
    where: str
    evidence: str


def framework_of(name: str) -> str:
    """``pytorch``, ``tensorflow`` or ``keras`` for a spelling of its name (``torch``, ``tf-nightly``, ``TF``)."""
    lowered = name.lower()
    if lowered.endswith("torch"):
        return "pytorch"
    return "keras" if lowered == "keras" else "tensorflow"


def normalise(framework: str, number: str) -> str | None:
    """``major.minor`` of a version number (``major`` for a bare TensorFlow major), or None when it is implausible."""
    parts = number.split(".")
    if not parts[0].isdigit() or int(parts[0]) not in _MAJORS[framework]:
        return None
    if len(parts) == 1:
        return parts[0] if framework == "tensorflow" and parts[0] != "0" else None
    if int(parts[1]) > 40:
        return None
    return f"{int(parts[0])}.{int(parts[1])}"


def extract(text: str) -> list[Version]:
    """Every distinct (framework, version) the text reports, in order of first appearance, with its first evidence."""
    text = _PLACEHOLDER.sub(" ", text or "")
    taken: list[tuple[int, int]] = []
    found: dict[tuple[str, str], Version] = {}
    hits = []
    for where, pattern in _RULES:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < e and s < end for s, e in taken):
                continue
            framework = framework_of(match.group("name"))
            number = match.group("number")
            version = normalise(framework, number)
            if version is None or ("." not in number and text[end : end + 1].isalpha()):  # tf2onnx is no version
                continue
            taken.append((start, end))
            evidence = " ".join(match.group(0).split())[:80]
            hits.append((start, Version(framework, version, where, evidence)))
    for _, hit in sorted(hits, key=lambda h: h[0]):
        found.setdefault((hit.framework, hit.version), hit)
    return list(found.values())


def version_key(version: str) -> tuple[int, ...]:
    """Numeric order of versions, a major's ``2.x`` after its minors (``1.9``, ``1.10``, ``1.x``, ``2.0``)."""
    return tuple(10**6 if part == "x" else int(part) for part in version.split("."))
