"""Topic coherence and diversity on SYNTHETIC documents with known answers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from issuerisk.clustering.quality import Presence, breadth, diversity, npmi, size_stats


def test_npmi_of_words_that_always_co_occur_is_one_and_of_words_that_never_do_is_minus_one():
    docs = ["cuda memory error", "cuda memory leak", "shape mismatch", "shape dtype mismatch"]
    assert npmi([["cuda", "memory"]], docs) == pytest.approx(1.0)
    assert npmi([["cuda", "shape"]], docs) == -1.0


def test_npmi_of_independent_words_is_zero_and_matches_the_formula():
    docs = ["aa bb", "aa cc", "dd bb", "dd cc"]  # aa in 2/4, bb in 2/4, together in 1/4: independent
    assert npmi([["aa", "bb"]], docs) == pytest.approx(0.0, abs=1e-12)
    docs = ["xx yy", "xx yy", "xx zz", "ww"]  # P(xx)=3/4, P(yy)=1/2, P(xx,yy)=1/2
    assert npmi([["xx", "yy"]], docs) == pytest.approx(math.log(0.5 / (0.75 * 0.5)) / -math.log(0.5))


def test_bigram_keywords_count_when_their_words_appear_in_order():
    docs = ["cuda out of memory", "out of memory on cpu", "memory out"]
    assert npmi([["out of", "memory"]], docs) == pytest.approx(npmi([["out of", "memory"]], docs[:2] + ["memory"]))


def test_presence_from_its_word_index_equals_a_scan_of_every_document():
    rng = np.random.default_rng(0)
    vocabulary = ["cuda", "out", "of", "memory", "Shape", "mismatch", "x", "nan-loss", "torch.cuda"]
    docs = [
        " ".join(rng.choice(vocabulary, size=rng.integers(0, 8))) + rng.choice(["", "!", " (cpu)"]) for _ in range(300)
    ]
    presence = Presence(docs)
    for keyword in [
        "cuda",
        "memory",
        "out of",
        "out of memory",
        "shape mismatch",
        "nan loss",
        "torch cuda",
        "gpu",
        "of of",
    ]:
        scan = [f" {keyword} " in " " + " ".join(re.findall(r"(?u)\b\w\w+\b", d.lower())) + " " for d in docs]
        assert presence(keyword).tolist() == scan, keyword
    assert not Presence([]).__call__("cuda").size


def test_diversity_is_the_share_of_distinct_words():
    assert diversity([["cuda", "memory"], ["shape", "memory"]]) == 0.75
    assert diversity([["cuda memory"], ["memory"]]) == pytest.approx(2 / 3)
    assert diversity([]) is None


def test_size_stats():
    assert size_stats(np.array([0, 0, 1, -1, 1, 1])) == {
        "clusters": 2.0,
        "noise_share": pytest.approx(1 / 6),
        "size_min": 2.0,
        "size_median": 2.5,
        "size_max": 3.0,
    }


def test_breadth_tells_a_planted_catch_all_from_narrow_clusters():
    """SYNTHETIC: two narrow clusters (tight vectors, their own words) and a catch-all (loose vectors, words every
    issue uses): the catch-all's keywords are no more common in it than elsewhere (generic) and it spreads wider
    than the median cluster; the narrow ones' own words are generic only where every issue uses them."""
    rng = np.random.default_rng(0)
    dim = 16
    centres = np.eye(dim)[:3]

    def points(centre, noise, n):
        v = centre + noise * rng.standard_normal((n, dim))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    vectors = np.vstack([points(centres[0], 0.05, 30), points(centres[1], 0.05, 30), points(centres[2], 0.6, 40)])
    labels = np.array([0] * 30 + [1] * 30 + [2] * 40)
    docs = (
        ["cuda out of memory error on gpu with model code"] * 30
        + ["shape mismatch in conv2d layer error with model code"] * 30
        + ["error with model code when running"] * 40
    )
    keywords = {
        0: ["cuda", "memory", "gpu", "error"],
        1: ["shape", "mismatch", "conv2d", "layer"],
        2: ["error", "model", "code", "running"],
    }
    measured = breadth(vectors, labels, keywords, docs, generic_lift=2.0)
    assert measured[2].generic_keywords == ["error", "model", "code"] and measured[2].generic_share == 0.75
    assert measured[2].spread > 1.5 and measured[0].spread <= 1.0 and measured[1].spread <= 1.0  # 1.0: the median
    assert measured[0].generic_keywords == ["error"] and measured[1].generic_share == 0.0
    assert measured[0].cohesion > 0.9 > measured[2].cohesion
    assert measured[1].npmi == pytest.approx(1.0)  # its words always occur together


def test_a_cluster_set_apart_only_by_its_framework_and_by_failing_is_broad():
    """SYNTHETIC: one framework's failures of many kinds (its words: the framework's names and "error", "failed",
    each held only by it, so their lift alone calls them specific) beside one specific failure of the same framework
    (an API the TF 2 migration removed). Framework names and failure words count as generic; the API's do not."""
    vectors = np.eye(3)[[0] * 20 + [1] * 20 + [2] * 20].astype(float)
    labels = np.array([0] * 20 + [1] * 20 + [2] * 20)
    docs = (
        ["tensorflow tf keras error failed to load file line"] * 20
        + ["keras tf attributeerror get_default_graph compat v1 graph"] * 20
        + ["add a feature to the docs please"] * 20
    )
    keywords = {
        0: ["tensorflow", "tf", "keras", "error", "failed", "load", "file", "line"],
        1: ["keras", "tf", "attributeerror", "get_default_graph", "compat", "v1", "graph", "compat v1"],
    }
    measured = breadth(vectors, labels, keywords, docs, generic_lift=2.0)
    assert measured[0].generic_keywords == ["tensorflow", "tf", "keras", "error", "failed", "line"]
    assert measured[0].generic_share == 0.75
    assert measured[1].generic_keywords == ["keras", "tf"] and measured[1].generic_share == 0.25
