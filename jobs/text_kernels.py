"""Compiled inner loops of the filter's text rules (numba, cached on disk).

Three loops dominate the filter's CPU when written in Python or numpy:
py3langid's walk of its byte automaton (a Python ``for`` over every byte of
every text), hashing the word shingles of every text, and their MinHash
signatures. They are compiled here; py3langid's model and its verdicts are
unchanged (``tests/test_filter.py`` checks them against py3langid's own ``classify``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_MASK31 = (1 << 31) - 1


@numba.njit(cache=True, nogil=True)
def _dfa_features(nextmove: np.ndarray, rowbase: np.ndarray, output: np.ndarray, data: np.ndarray) -> np.ndarray:
    """py3langid's ``visit_counts`` walk: the feature index emitted at each byte (one per hit)."""
    found = np.empty(len(data), dtype=np.int64)
    n = 0
    state = 0
    for byte in data:
        state = nextmove[rowbase[state] + byte]
        feature = output[state]
        if feature >= 0:
            found[n] = feature
            n += 1
    return found[:n]


@numba.njit(cache=True, nogil=True)
def _shingles(data: np.ndarray, k: int) -> np.ndarray:
    """Folded FNV-1a hashes of every window of ``k`` space-separated words of ASCII bytes."""
    words = np.empty(len(data) // 2 + 1, dtype=np.uint64)
    n = 0
    h = _FNV_OFFSET
    in_word = False
    for byte in data:
        if byte == 32:
            if in_word:
                words[n] = h
                n += 1
                h = _FNV_OFFSET
                in_word = False
        else:
            h = (h ^ np.uint64(byte)) * _FNV_PRIME
            in_word = True
    if in_word:
        words[n] = h
        n += 1
    if n < k:
        folded = np.empty(1, dtype=np.uint64)
        acc = np.uint64(0)
        for i in range(n):
            acc = acc * _MIX + words[i]
        folded[0] = acc
        return folded
    folded = np.empty(n - k + 1, dtype=np.uint64)
    for i in range(n - k + 1):
        acc = words[i]
        for j in range(1, k):
            acc = acc * _MIX + words[i + j]
        folded[i] = acc
    return folded


def shingle_hashes(text: str, k: int = 3) -> np.ndarray:
    """Sorted distinct 31-bit hashes of the word ``k``-shingles of a normalized (ASCII, single-spaced) text.

    A text of fewer than ``k`` words is one shingle. Hashes are FNV-1a, stable across processes.
    """
    data = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8)
    return np.unique(_shingles(data, k) >> np.uint64(33))


@numba.njit(cache=True, nogil=True)
def _minhash(values: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    prime = np.uint64(_MASK31)
    out = np.empty((len(offsets) - 1, len(a)), dtype=np.uint64)
    for t in range(len(offsets) - 1):
        for p in range(len(a)):
            low = np.uint64(0xFFFFFFFFFFFFFFFF)
            for s in range(offsets[t], offsets[t + 1]):
                h = (values[s] * a[p] + b[p]) % prime
                if h < low:
                    low = h
            out[t, p] = low
    return out


def minhash_signatures(shingles: list[np.ndarray], perms: int, seed: int = 7) -> np.ndarray:
    """(texts, perms) MinHash signatures, ``min((a * x + b) mod (2**31 - 1))`` over each text's 31-bit shingle hashes.

    Every text needs at least one shingle (:func:`shingle_hashes` always gives one).
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _MASK31, perms, dtype=np.uint64)
    b = rng.integers(0, _MASK31, perms, dtype=np.uint64)
    offsets = np.zeros(len(shingles) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in shingles], out=offsets[1:])
    values = np.concatenate(shingles) if shingles else np.empty(0, dtype=np.uint64)
    return _minhash(values.astype(np.uint64), offsets, a, b)


def language_identifier() -> Any:
    """py3langid's identifier (its model, normalization and aliases) with the byte walk compiled.

    Its ``classify`` returns what py3langid's returns: (language, probability).
    """
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Py3LangId

    class Compiled(Py3LangId):  # py3langid's class has __slots__; this subclass may hold the numpy copies
        _walk: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        _weights: np.ndarray | None = None

        def _raw_score(self, text: bytes) -> np.ndarray:
            if self._walk is None:  # made once: the automaton as arrays, the float16 weights as float32 (exact)
                self._walk = (np.asarray(self.tk_nextmove, dtype=np.uint32), np.asarray(self._rowbase, dtype=np.int64),
                              np.asarray(self.tk_output, dtype=np.int64))
                self._weights = self.nb_ptc.astype(np.float32)
            found = _dfa_features(*self._walk, np.frombuffer(text, dtype=np.uint8))
            if not len(found):
                return np.zeros(len(self.nb_classes), dtype=np.float32)  # no features: abstain (norm_probs)
            index, counts = np.unique(found, return_counts=True)
            return np.log1p(counts.astype(np.float32)) @ self._weights[index] + self.nb_pc

    return Compiled.from_model_file(MODEL_FILE, norm_probs=True)
