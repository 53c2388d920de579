"""Project-only words: learned from where their uses concentrate, removed from that repository's texts only (SYNTHETIC
texts)."""

from __future__ import annotations

from issuerisk.text.masking import learn_terms, mask, repository_words


def test_repository_words_split_owner_and_name():
    assert repository_words("DeepLabCut/DeepLabCut") == {"deeplabcut", "deep", "lab", "cut"}
    assert repository_words("ludwig-ai/ludwig") == {"ludwig-ai", "ludwig"}
    assert "pytorch" not in repository_words("someone/pytorch-toolbelt"), "framework names are never masked"


def test_a_word_is_project_only_where_its_uses_concentrate():
    repos = ["o/kymatio"] * 9 + ["o/other"] * 1 + ["o/a", "o/b", "o/c", "o/d"] * 3
    texts = (
        ["kymatio scattering fails with RuntimeError"] * 9
        + ["kymatio once elsewhere"]
        + ["scattering transform gives nan with torch.fft RuntimeError"] * 12
    )
    terms = {(r, t) for r, t, _, _ in learn_terms(repos, texts, min_docs=5, min_share=0.8)}
    assert ("o/kymatio", "kymatio") in terms, "9 of 10 uses in one repository"
    assert not any(t == "scattering" for _, t in terms), "used in 5 repositories"
    assert not any(t in ("runtimeerror", "torch", "nan") for _, t in terms), "error types and framework names are kept"


def test_rare_words_are_not_learned():
    assert learn_terms(["o/x"] * 4, ["zzzname bug"] * 4, min_docs=5, min_share=0.8) == []


def test_mask_removes_whole_words_in_any_case_and_keeps_framework_api_names():
    text = "[Kymatio] Scattering1D crashes: kymatio.numpy backend with torch.fft and KymatioError"
    assert mask(text, {"kymatio", "scattering1d"}) == "[] crashes: .numpy backend with torch.fft and KymatioError"
    assert mask("nothing to do", set()) == "nothing to do"
