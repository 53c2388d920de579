"""Project-only words, learned from the corpus, removed from the text before it is embedded.

A framework risk is a failure that recurs across projects, so the embedded text
must not say which project it comes from. A word is project-only for a
repository when at least ``min_docs`` issues of the corpus use it and at least
``min_share`` of them are that repository's: its name and package, its module
and class names, its issue template's words. Such words are removed from that
repository's texts only (``serialization`` is an mlflow word in mlflow's issues
but a failure theme in the others), and so are the parts of the repository's
own owner and name. Framework API names (``torch.*``, ``tf.*``, ``keras.*``) and
error types are never removed.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}")
_MASKABLE = re.compile(r"(?<![\w.])[A-Za-z][A-Za-z0-9_]{2,}(?![\w])")
_PARTS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")
KEEP = frozenset(
    "torch pytorch tensorflow keras cuda cudnn nvidia gpu cpu python numpy pip conda jax onnx tpu "
    "nan inf error errors exception traceback warning".split()
)
_ERROR_TYPE = re.compile(r"(?:Error|Exception|Warning|Fault|Exit|Interrupt)$")


def repository_words(repository: str) -> set[str]:
    """Lower-case parts (3+ characters) of a repository's owner and name: ``DeepLabCut/DeepLabCut`` gives deeplabcut,
    deep, lab, cut."""
    words = set()
    for part in repository.split("/"):
        words.add(part.lower())
        words.update(p.lower() for p in _PARTS.split(part) if len(p) >= 3)
    return {w for w in words if len(w) >= 3} - KEEP


def _protected(word: str) -> bool:
    return word.lower() in KEEP or bool(_ERROR_TYPE.search(word))


def learn_terms(
    repositories: Iterable[str], texts: Iterable[str], min_docs: int, min_share: float
) -> list[tuple[str, str, int, float]]:
    """(repository, term, issues using it, share of them in that repository) of every project-only term.

    Args:
        repositories: the repository of each text.
        texts: one text per issue (title and body).
        min_docs: issues that must use a word before it can be project-only (rarer words carry little weight anyway).
        min_share: share of those issues one repository must hold.
    """
    docs: Counter[str] = Counter()
    by_repo: dict[str, Counter[str]] = defaultdict(Counter)
    for repository, text in zip(repositories, texts):
        for word in {w.lower() for w in WORD.findall(text or "") if not _protected(w)}:
            docs[word] += 1
            by_repo[word][repository] += 1
    terms = []
    for word, n in docs.items():
        if n < min_docs:
            continue
        repository, top = by_repo[word].most_common(1)[0]
        if top / n >= min_share:
            terms.append((repository, word, n, round(top / n, 4)))
    return sorted(terms)


def mask(text: str, words: set[str]) -> str:
    """``text`` without the given lower-case words (whole words, any case; dotted API names are kept), spaces folded."""
    if not words:
        return text
    kept = _MASKABLE.sub(
        lambda m: "" if m.group(0).lower() in words and not _protected(m.group(0)) else m.group(0), text
    )
    return " ".join(kept.split())
