"""Which repositories are not software projects: tutorials, handbooks, courses, books, awesome lists, UIs.

Shared by discovery (which does not crawl them) and the filter (which excludes
issues that were crawled anyway).
"""

from __future__ import annotations

import re

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")


def repo_keyword(repository: str, description: str | None, keywords: list[str]) -> str | None:
    """The first exclusion keyword that appears as a word of the repository's name or description.

    Words are split on punctuation and camelCase, so ``DeepLearningTutorials`` matches
    ``tutorial`` while ``notebooks`` does not match ``book``; plurals count.
    """
    name = repository.split("/", 1)[-1]
    for source, text in (("name", name), ("description", description or "")):
        words = {w.lower() for w in _WORD_SPLIT.split(text) if w}
        for kw in keywords:
            if kw.lower() in words or kw.lower() + "s" in words:
                return f"{kw} in {source}"
    return None
