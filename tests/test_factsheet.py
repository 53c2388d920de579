"""The factsheet and narrative of a run, from a SYNTHETIC ledger row: content, and rendering in headless Chromium with
no loads."""

from __future__ import annotations

import json
import re

from issuerisk.html import render_page
from issuerisk.report.factsheet import build_factsheet, excluded_text, narrative
from tests.test_report import open_in_chromium

CONFIG = {
    "project": {"sample_size": None},
    "cluster": {"n_neighbors": 15, "min_cluster_size": 30},
    "topics": {"top_n_words": 10},
    "filter": {"language": "en"},
    "risk": {
        "min_grade_confidence": 0.8,
        "bootstrap_rounds": 200,
        "impact_measure": "rmst",
        "impact_horizon_days": 365,
        "min_defect_share": 0.5,
        "min_repositories": 3,
        "max_repository_share": 0.5,
        "min_stability": 0.6,
    },
    "embed": {"model": "m", "query_prefix": "", "max_seq_length": 128},
}
METRICS = {
    "run": {"did": "Run every stage", "config_sections": [], "step": 0, "stage_seconds": 99.0},
    "filter": {
        "did": "Build silver_issues from bronze",
        "config_sections": ["filter"],
        "step": 1,
        "stage_seconds": 9.5,
        "tables_read": {"bronze_issues": 3},
        "tables_written": {"silver_issues": 4},
        "bronze": 120,
        "silver": 100,
        "excluded": {"non_english": 15, "bot_author": 5},
    },
    "cluster": {
        "did": "StandardScaler -> UMAP -> HDBSCAN",
        "config_sections": ["cluster"],
        "step": 2,
        "stage_seconds": 30.0,
        "tables_read": {"gold_embeddings": 7},
        "tables_written": {"gold_clusters": 2},
        "noise_share": 0.125,
        "issues": 100,
    },
    "risk": {
        "did": "Grade the defect patterns",
        "config_sections": ["risk"],
        "step": 3,
        "stage_seconds": 0.3,
        "tables_written": {"gold_risk": 1},
    },
}
RISK = [
    {
        "scope": "all",
        "cluster": 0,
        "grade": "H2",
        "n": 40,
        "grade_confidence": 0.6,
        "action": "block",
        "label": "cuda / memory",
        "excluded_reason": None,
    },
    {
        "scope": "all",
        "cluster": 1,
        "grade": None,
        "n": 20,
        "grade_confidence": None,
        "action": None,
        "label": "docs",
        "excluded_reason": "not a defect pattern: defect share 0.10 < risk.min_defect_share 0.5",
    },
    {
        "scope": "all",
        "cluster": 2,
        "grade": None,
        "n": 12,
        "grade_confidence": None,
        "action": None,
        "label": "x",
        "excluded_reason": "project-specific: 2 repositories < risk.min_repositories 3",
    },
]
ROW = {
    "run_id": "r1",
    "command": "run",
    "args_json": json.dumps({"paths": ["/data/issues"]}),
    "config_json": json.dumps(CONFIG),
    "metrics_json": json.dumps(METRICS),
    "runtime": {"embed_model": "m@sha256:abc", "cpu": "EPYC", "pid": "1"},
    "packages": {"torch": "2.9"},
    "seeds": {"project": 42},
    "tables_read": {"bronze_issues": 3},
    "tables_written": {"gold_risk": 1},
    "git_commit": "abc",
    "config_hash": "h",
}
PROFILE = [
    {"check": "top_repository_share", "scope": "all", "warning": True, "message": "o/big holds 23.0 % of all issues"},
    {"check": "open_share", "scope": "all", "warning": False, "message": "10 % open"},
]


def sheet():
    return build_factsheet(
        ROW,
        PROFILE,
        [{"measure": "noise_share", "value": 0.125}],
        RISK,
        [{"cluster": 0, "name": "CUDA out of memory"}],
        "/wh",
    )


def test_narrative_tells_each_stage_from_the_ledger_in_order():
    steps = narrative(ROW, RISK)
    assert [s["stage"] for s in steps] == ["filter", "cluster", "risk"]
    f = steps[0]
    assert f["read"] == "bronze_issues@v3" and f["wrote"] == "silver_issues@v4" and f["seconds"] == 9.5
    assert f["excluded"] == "excluded 20 issues into silver_excluded: non_english 15, bot_author 5"
    assert f["parameters"] == {"filter.language": "en"} and f["counts"] == {
        "bronze": 120,
        "silver": 100,
        "excluded": {"non_english": 15, "bot_author": 5},
    }
    assert steps[1]["excluded"] == "left 12.5 % of 100 issues as noise (in no pattern)"
    assert steps[2]["excluded"] == "did not grade 2 clusters: not a defect pattern (1); project-specific (1)"
    assert excluded_text("summarize", {"failed": 0}, []) is None


def test_factsheet_holds_every_section_and_the_replay_command():
    s = sheet()
    assert s["replay"] == "issuerisk --warehouse /wh replay r1"
    assert s["models"]["embedding"]["model"] == "m@sha256:abc"
    assert s["data"]["profile_warnings"] == ["top_repository_share (all): o/big holds 23.0 % of all issues"]
    assert (
        s["results"]["graded"] == 1
        and s["results"]["not_graded"] == 2
        and s["results"]["top"][0]["name"] == "CUDA out of memory"
    )
    assert any("1 of 1 grades have bootstrap confidence under 80 %" in line for line in s["limitations"])
    assert "pid" not in s["environment"]["runtime"]
    assert set(s) >= {
        "purpose",
        "data",
        "models",
        "quality",
        "risk_method",
        "results",
        "limitations",
        "replay",
        "narrative",
    }
    json.dumps(s)


def test_factsheet_renders_in_chromium_and_loads_nothing(tmp_path):
    html = render_page("factsheet.html.j2", sheet=sheet(), report="r1.html")
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?https?:""", html) and "<script" not in html
    page = tmp_path / "r1.factsheet.html"
    page.write_text(html, encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []  # a blocked load or a refused style would be logged here
    for text in (
        "issuerisk --warehouse /wh replay r1",
        "o/big holds 23.0 % of all issues",
        "non_english 15",
        "m@sha256:abc",
        'data-stage="cluster"',
        "CUDA out of memory",
    ):
        assert text in dom, text


def test_kinds_from_an_llm_are_named_with_their_check_against_labels():
    llm = {
        "model_id": "llm-m-v1-abcd1234",
        "asked": 40,
        "answered": 38,
        "failed_by_reason": {"not_a_kind": 2},
        "label_check": {"issues": 20, "macro_f1_core": 0.812},
        "classifier_macro_f1_core": 0.735,
    }
    row = {**ROW, "metrics_json": json.dumps({**METRICS, "classify": {"llm": llm}})}
    s = build_factsheet(row, PROFILE, [], RISK, [], "/wh")
    assert s["models"]["issue_kinds"]["llm"]["answered"] == 38
    assert any(
        "from an LLM (llm-m-v1-abcd1234" in line
        and "{'not_a_kind': 2}" in line
        and "macro-F1 0.81 (the classifier, on repositories it never saw: 0.73)" in line
        for line in s["limitations"]
    )
    assert sheet()["models"]["issue_kinds"]["llm"] is None
