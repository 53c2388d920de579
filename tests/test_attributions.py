"""Attributions of a text's similarity to a cluster centroid: sentence splitting (pure), then both methods on MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from issuerisk.ray_tasks.attributions import explain, split_sentences

INSTRUCT = "Instruct: Given a GitHub issue, retrieve similar issues\nQuery: "
FILLER = [
    "The weather was lovely this weekend, so we went hiking in the hills.",
    "Thanks a lot to everyone who helped with the last release!",
    "Our project schedule says the next milestone is due at the end of March.",
    "Hello all, I hope you are having a nice day.",
    "The coffee machine in the office was repaired yesterday.",
]
CLUSTERS = {
    "oom": [
        "CUDA out of memory when allocating tensor on the GPU",
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "GPU runs out of memory during training with a large batch size",
        "torch.cuda.OutOfMemoryError when allocating a tensor",
        "out of memory error on the GPU while training the model",
        "CUDA OOM: failed to allocate memory on the device",
        "my GPU memory is exhausted when I allocate tensors",
        "cuda runtime error: out of memory while running the forward pass",
    ],
    "import": [
        "ModuleNotFoundError: No module named 'tensorflow'",
        "ImportError: cannot import name 'keras' from tensorflow",
        "pip install succeeded but import fails with No module named torch",
        "cannot import the package after installing it with pip",
        "ImportError when importing torchvision, module not found",
        "No module named 'tensorflow.keras' after upgrading",
        "import error: the installed package cannot be found by python",
        "ModuleNotFoundError after pip install in a virtual environment",
    ],
}


def test_split_sentences_breaks_after_terminators_followed_by_space():
    text = "It crashes. Why?! See torch.nn.functional v1.2.3 docs... Thanks"
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "It crashes.",
        "Why?!",
        "See torch.nn.functional v1.2.3 docs...",
        "Thanks",
    ]


def test_split_sentences_breaks_on_newlines_and_drops_empty_pieces():
    text = (
        'Title here\n\nTraceback (most recent call last):\n  File "x.py", line 3, in <module>\nValueError: bad '
        "value.  \n"
    )
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "Title here",
        "Traceback (most recent call last):",
        'File "x.py", line 3, in <module>',
        "ValueError: bad value.",
    ]
    assert all(text[s:e] == text[s:e].strip() for s, e in spans)
    assert split_sentences("") == [] and split_sentences(" \n\t ") == []


@pytest.fixture(scope="module")
def model(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path, device="cpu")


def centroid_of(model, texts: list[str]) -> np.ndarray:
    mean = model.encode(texts, normalize_embeddings=True).mean(0)
    return mean / np.linalg.norm(mean)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cluster", "planted", "position"),
    [
        ("oom", "RuntimeError: CUDA out of memory while allocating a tensor on the GPU.", 2),
        ("import", "After pip install I get ModuleNotFoundError: No module named 'tensorflow'.", 3),
    ],
)
def test_both_methods_rank_the_planted_sentence_first(model, cluster, planted, position):
    sentences = FILLER[:position] + [planted] + FILLER[position:]
    explanation = explain(model, " ".join(sentences), centroid_of(model, CLUSTERS[cluster]))

    assert [s.text for s in explanation.sentences] == sentences
    assert int(np.argmax([s.perturbation for s in explanation.sentences])) == position
    assert int(np.argmax([s.gradient for s in explanation.sentences])) == position
    assert -1.0 <= explanation.agreement <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["", INSTRUCT])
def test_similarity_matches_encode_and_integrated_gradients_are_complete(model, prefix):
    text = " ".join(
        FILLER[:2] + ["RuntimeError: CUDA out of memory while allocating a tensor on the GPU."] + FILLER[2:]
    )
    centroid = centroid_of(model, CLUSTERS["oom"])
    explanation = explain(model, text, centroid, prefix=prefix, steps=20)

    assert explanation.similarity == pytest.approx(
        float(model.encode(prefix + text, normalize_embeddings=True) @ centroid), abs=1e-4
    )
    assert explanation.completeness_gap < 0.01 * abs(explanation.similarity - explanation.baseline_similarity)
    assert all(t.text == text[t.start : t.end] and 0 <= t.start < t.end <= len(text) for t in explanation.tokens)
    assert "Query" not in {t.text for t in explanation.tokens}
    assert sum(t.gradient for t in explanation.tokens) == pytest.approx(
        sum(s.gradient for s in explanation.sentences), abs=1e-6
    )
    perturbed = [t for t in explanation.tokens if t.perturbation is not None]
    assert 1 <= len({t.text.casefold() for t in perturbed}) <= 8
    assert {"cuda", "memory"} <= {t.text.casefold() for t in perturbed}


@pytest.mark.slow
def test_word_pieces_merge_into_words(model):
    explanation = explain(model, "RuntimeError in the tokenizer", np.ones(384), steps=2)
    assert [t.text for t in explanation.tokens] == ["RuntimeError", "in", "the", "tokenizer"]


@pytest.mark.slow
def test_sentences_past_the_cut_are_flagged_and_score_zero(model):
    text = " ".join(f"Step {i} of the install failed with exit code {i}." for i in range(60))
    explanation = explain(model, text, centroid_of(model, CLUSTERS["import"]), steps=4, top_tokens=2)

    flags = [s.truncated for s in explanation.sentences]
    assert not flags[0] and flags[-1]
    assert flags == sorted(flags)  # a prefix of seen sentences, then the cut ones
    assert explanation.tokens[-1].end <= explanation.sentences[flags.index(True)].end
    for s in explanation.sentences:
        if s.start >= explanation.tokens[-1].end:
            assert s.truncated and s.perturbation == 0.0 and s.gradient == 0.0
    assert explanation.similarity == pytest.approx(
        float(model.encode(text, normalize_embeddings=True) @ centroid_of(model, CLUSTERS["import"])), abs=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("text", ["CUDA out of memory.", "CUDA out of memory. Thanks for the help!"])
def test_agreement_needs_three_sentences(model, text):
    explanation = explain(model, text, centroid_of(model, CLUSTERS["oom"]), steps=4)
    assert explanation.agreement is None
    assert np.isfinite(explanation.completeness_gap)


@pytest.mark.slow
def test_without_gradients_words_are_picked_by_frequency(model):
    text = "Memory leak. The memory grows every epoch. Memory is never freed on the GPU."
    explanation = explain(model, text, centroid_of(model, CLUSTERS["oom"]), steps=0, top_tokens=1)

    assert explanation.agreement is None and np.isnan(explanation.completeness_gap)
    assert all(t.gradient == 0.0 for t in explanation.tokens + explanation.sentences)
    perturbed = [t for t in explanation.tokens if t.perturbation is not None]
    assert [t.text for t in perturbed] == ["Memory", "memory", "Memory"]
    assert len({t.perturbation for t in perturbed}) == 1 and perturbed[0].perturbation > 0
