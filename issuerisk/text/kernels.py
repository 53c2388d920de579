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
def _classify(
    nextmove: np.ndarray,
    rowbase: np.ndarray,
    output: np.ndarray,
    weights: np.ndarray,
    prior: np.ndarray,
    aliases: np.ndarray,
    data: np.ndarray,
    offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """py3langid's ``_decide`` (norm_probs) for each text ``data[offsets[t]:offsets[t + 1]]``: (best class, its
    probability).

    The byte automaton's features are counted, ``log1p(count) @ weights + prior`` is summed in
    float32 over the features in ascending order (as ``np.unique`` gives them to py3langid),
    scaled by ``1 / sqrt(bytes)``, soft-maxed, and aliased columns are folded into their first.
    """
    classes = weights.shape[1]
    counts = np.zeros(weights.shape[0], dtype=np.int32)
    longest = 0
    for t in range(len(offsets) - 1):
        longest = max(longest, offsets[t + 1] - offsets[t])
    touched = np.empty(longest, dtype=np.int64)
    scores = np.empty(classes, dtype=np.float32)
    best = np.empty(len(offsets) - 1, dtype=np.int64)
    confidence = np.empty(len(offsets) - 1, dtype=np.float32)
    for t in range(len(offsets) - 1):
        k = 0
        state = 0
        for p in range(offsets[t], offsets[t + 1]):
            state = nextmove[rowbase[state] + data[p]]
            feature = output[state]
            if feature >= 0:
                if counts[feature] == 0:
                    touched[k] = feature
                    k += 1
                counts[feature] += 1
        scores[:] = 0.0
        if k:  # no features: all scores stay 0, uniform after the soft-max (py3langid abstains the same way)
            found = np.sort(touched[:k])
            for i in range(k):
                weight = np.float32(np.log1p(np.float32(counts[found[i]])))
                counts[found[i]] = 0
                for c in range(classes):
                    scores[c] += weight * weights[found[i], c]
            for c in range(classes):
                scores[c] += prior[c]
        scale = np.float32(1.0 / np.sqrt(max(offsets[t + 1] - offsets[t], 1)))
        top = np.float32(-np.inf)
        for c in range(classes):
            scores[c] *= scale
            top = max(top, scores[c])
        total = np.float32(0.0)
        for c in range(classes):
            scores[c] = np.exp(scores[c] - top)
            total += scores[c]
        for c in range(classes):
            scores[c] /= total
        for a in range(len(aliases)):
            scores[aliases[a, 0]] += scores[aliases[a, 1]]
            scores[aliases[a, 1]] = 0.0
        best[t] = np.argmax(scores)
        confidence[t] = scores[best[t]]
    return best, confidence


@numba.njit(cache=True, nogil=True)
def _shingles(data: np.ndarray, k: int) -> np.ndarray:
    """Sorted distinct 31-bit folded FNV-1a hashes of every window of ``k`` space-separated words of ASCII bytes."""
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
    else:
        folded = np.empty(n - k + 1, dtype=np.uint64)
        for i in range(n - k + 1):
            acc = words[i]
            for j in range(1, k):
                acc = acc * _MIX + words[i + j]
            folded[i] = acc
    return np.unique(folded >> np.uint64(33))


def shingle_hashes(text: str, k: int = 3) -> np.ndarray:
    """Sorted distinct 31-bit hashes of the word ``k``-shingles of a normalized (ASCII, single-spaced) text.

    A text of fewer than ``k`` words is one shingle. Hashes are FNV-1a, stable across processes.
    """
    return _shingles(np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8), k)


@numba.njit(cache=True, nogil=True)
def _minhash(values: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    prime = np.uint64(_MASK31)
    out = np.empty((len(offsets) - 1, len(a)), dtype=np.uint64)
    for t in range(len(offsets) - 1):
        for p in range(len(a)):
            low = np.uint64(0xFFFFFFFFFFFFFFFF)
            for s in range(offsets[t], offsets[t + 1]):
                h = values[s] * a[p] + b[p]  # < 2**63; mod 2**31 - 1 by folding (2**31 = 1), no division
                h = (h & prime) + (h >> np.uint64(31))
                h = (h & prime) + (h >> np.uint64(31))
                if h >= prime:
                    h -= prime
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
    """py3langid's identifier (its model, normalization and aliases) with the scoring compiled.

    ``classify(text)`` returns what py3langid's returns, (language, probability);
    ``classify_many(texts)`` does the same for a list in one compiled call.
    """
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Py3LangId

    class Compiled(Py3LangId):  # py3langid's class has __slots__; this subclass may hold the numpy copies
        _model: tuple[np.ndarray, ...] | None = None

        def classify(self, text: str | bytes) -> tuple[str, float]:
            return self.classify_many([text])[0]

        def classify_many(self, texts: list[str | bytes]) -> list[tuple[str, float]]:
            if not self._norm_probs:
                raise ValueError("the compiled identifier implements norm_probs=True only")
            if self._model is None:  # made once: the automaton as arrays, the float16 weights as float32 (exact)
                self._model = (
                    np.asarray(self.tk_nextmove, dtype=np.uint32),
                    np.asarray(self._rowbase, dtype=np.int64),
                    np.asarray(self.tk_output, dtype=np.int64),
                    self.nb_ptc.astype(np.float32),
                    np.asarray(self.nb_pc, dtype=np.float32),
                    np.asarray(self._alias_pairs, dtype=np.int64).reshape(-1, 2),
                )
            encoded = [self._encode(text) for text in texts]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in encoded], out=offsets[1:])
            data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            best, confidence = _classify(*self._model, data, offsets)
            out = []
            for i, conf in zip(best.tolist(), confidence.tolist()):
                if self.min_confidence is not None and conf < self.min_confidence:
                    out.append(("und", conf))
                else:
                    out.append((self.nb_classes[i], conf))
            return out

    return Compiled.from_model_file(MODEL_FILE, norm_probs=True)
