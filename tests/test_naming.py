"""Readable pattern names from titles, and fault categories by similarity (SYNTHETIC titles and planted vectors)."""

from __future__ import annotations

import numpy as np

from issuerisk.analysis.naming import UNMAPPED, map_categories, readable_names


def test_the_phrase_a_cluster_s_titles_share_names_it():
    titles = {
        0: [
            "CUDA out of memory during training",
            "RuntimeError: CUDA out of memory on 2 GPUs",
            "cuda out of memory with batch size 64",
            "Training crashes",
        ],
        1: [
            "Input shape mismatch in custom layer",
            "shape mismatch when calling model.fit",
            "Error: input shape mismatch",
        ],
        2: ["Add a link", "Typo", "Hello"],
    }
    names = readable_names(titles, {0: ["cuda", "memory"], 1: ["shape"], 2: ["link", "typo", "readme"]})
    assert names[0] == ("cuda out of memory", "titles", 0.75)
    assert names[1] == ("shape mismatch", "titles", 1.0), "in all three titles, against two for the longer phrase"
    assert names[2][:2] == ("link / typo / readme", "keywords"), "no phrase shared by two titles: keywords stand in"
    assert names[2][2] == round(2 / 3, 4), "'Add a link' and 'Typo' hold one of the name's keywords"


def test_a_phrase_every_cluster_uses_loses_to_a_distinctive_one():
    titles = {
        0: ["fails on windows with nan loss", "nan loss fails on windows"],
        1: ["fails on windows import", "fails on windows dll"],
    }
    assert readable_names(titles, {})[0][0] == "nan loss"


def test_planted_clusters_map_to_the_category_they_were_planted_near():
    rng = np.random.default_rng(0)
    categories = {name: rng.normal(size=16) for name in ("GPU usage", "training", "API")}
    centroids = {c: categories[name] + rng.normal(scale=0.2, size=16) for c, name in enumerate(categories)}
    centroids[9] = rng.normal(size=16)  # near nothing
    mapped = map_categories(centroids, categories, threshold=0.8)
    assert [mapped[c][0] for c in range(3)] == list(categories)
    assert all(mapped[c][1] > 0.9 for c in range(3))
    assert mapped[9][0] == UNMAPPED and mapped[9][1] < 0.8


def test_without_categories_everything_is_unmapped():
    assert map_categories({0: np.ones(3)}, {}, 0.3)[0][0] == UNMAPPED


def test_a_minority_phrase_that_contradicts_the_keywords_does_not_name_the_cluster():
    """Issue 27.2: the corpus's cluster named "object has no attribute" whose keywords were FileNotFoundError / errno /
    directory. Planted: a minority phrase shared by more titles than any agreeing phrase loses to one that agrees."""
    titles = {
        0: [
            "AttributeError: object has no attribute 'save'",
            "object has no attribute 'path' in loader",
            "Dataset object has no attribute 'root'",
            "object has no attribute 'load'",
            "FileNotFoundError: Errno 2 no such file or directory",
            "No such file or directory when loading weights",
            "Errno 2 file or directory missing",
        ],
        1: ["Shape mismatch in layer", "shape mismatch in model"],
    }
    keywords = {0: ["filenotfounderror", "errno", "directory", "file", "such file"], 1: ["shape", "mismatch"]}
    names = readable_names(titles, keywords)
    assert names[0][1] == "titles" and "directory" in names[0][0].split(), names[0]
    assert readable_names(titles, {0: ["attribute"], 1: ["shape"]})[0][0] == "object has no attribute"
    assert readable_names(titles, {0: ["tokenizer", "vocab"], 1: ["shape"]})[0][:2] == ("tokenizer / vocab", "keywords")


def test_a_name_must_cover_most_of_the_cluster_and_keyword_names_prefer_specific_covering_words():
    """Issue 27.2: the phrase of a minority names no cluster when the rule asks for most of it; the keywords that
    stand in are the specific ones that cover the most issues, in keyword order."""
    titles = {
        0: ["DLL load failed on Windows", "DLL load failed again", "tensorflow env broken", "tensorflow env on conda"],
        1: ["shape mismatch", "shape mismatch in layer"],
    }
    documents = {
        0: [f"{t}: error" for t in titles[0]],
        1: titles[1],
    }
    keywords = {0: ["error", "dll", "tensorflow", "env", "failed"], 1: ["shape"]}
    loose = readable_names(titles, keywords, 0.4, documents)
    assert loose[0] == ("dll load failed", "titles", 0.5)
    strict = readable_names(titles, keywords, 0.6, documents, generic={0: ["error"]})
    assert strict[0] == ("dll / tensorflow / env", "keywords", 1.0), strict[0]
    assert "error" not in strict[0][0].split(" / "), "a generic keyword never names a pattern when others remain"


def test_a_keyword_name_never_repeats_a_word():
    """The whole corpus's "filenotfounderror / filenotfounderror errno / errno": a bigram and its own parts."""
    titles = {0: ["cannot open", "missing"], 1: ["other"]}
    keywords = {0: ["filenotfounderror", "filenotfounderror errno", "errno", "trainpy", "directory"], 1: ["x"]}
    name, source, _ = readable_names(titles, keywords, 0.5)[0]
    words = [w for part in name.split(" / ") for w in part.split()]
    assert source == "keywords" and len(words) == len(set(words)), name
