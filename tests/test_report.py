"""The HTML report: built from synthetic gold rows, opened in headless Chromium, checked for its numbers and script
errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from issuerisk.html import csp_hash, http_url
from issuerisk.report.report import ReportInputError, build_view, heatmap_svg, render, scatter_svg, top_risks

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=2000",
)


def _chromium() -> str:
    """Path of a Chromium binary; installs the Debian package when missing and possible, else skips."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900, check=False)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip(
        "headless Chromium is absent and could not be installed (apt-get install -y chromium needs root and the Debian "
        "mirror)"
    )


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after scripts ran and the console messages Chromium logged while loading ``page``."""
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    return proc.stdout, console


def synthetic_view(**overrides):
    """A view of synthetic gold rows: three clusters in scope all, two in pytorch, one unrated."""
    risk = [
        {
            "scope": "all",
            "cluster": 3,
            "label": "cuda / memory",
            "n": 40,
            "p_k": 0.4,
            "likelihood": "P4",
            "mttr_hours": 900.0,
            "median_ttr_hours": 100.0,
            "open_share": 0.25,
            "impact": "I3",
            "grade": "H3",
            "action": "full review",
        },
        {
            "scope": "all",
            "cluster": 7,
            "label": "install / pip",
            "n": 55,
            "p_k": 0.55,
            "likelihood": "P4",
            "mttr_hours": 12.5,
            "median_ttr_hours": 3.0,
            "open_share": 0.1,
            "impact": "I1",
            "grade": "H1",
            "action": "act",
        },
        {
            "scope": "all",
            "cluster": 9,
            "label": "shape <mismatch>",
            "n": 5,
            "p_k": 0.05,
            "likelihood": "P3",
            "mttr_hours": None,
            "median_ttr_hours": None,
            "open_share": 1.0,
            "impact": None,
            "grade": None,
            "action": None,
        },
        {
            "scope": "pytorch",
            "cluster": 3,
            "label": "cuda / memory",
            "n": 30,
            "p_k": 0.6,
            "likelihood": "P4",
            "mttr_hours": 800.0,
            "median_ttr_hours": 90.0,
            "open_share": 0.2,
            "impact": "I3",
            "grade": "H3",
            "action": "full review",
        },
    ]
    topics = [
        {
            "cluster": 3,
            "keywords": ["cuda", "memory", "allocation"],
            "representative": ["https://github.com/o/r/issues/1"],
        }
    ]
    comparison = [
        {
            "cluster": 3,
            "framework": "pytorch",
            "n": 30,
            "share": 0.6,
            "expected": 20.0,
            "std_residual": 4.25,
            "grade": "H3",
            "chi2": 31.5,
            "p_value": 1e-6,
        },
        {
            "cluster": 3,
            "framework": "keras",
            "n": 10,
            "share": 0.2,
            "expected": 20.0,
            "std_residual": -4.25,
            "grade": None,
            "chi2": 31.5,
            "p_value": 1e-6,
        },
    ]
    points = [(float(i), float(i % 7), c) for i, c in enumerate([3] * 40 + [7] * 55 + [9] * 5 + [-1] * 10)]
    manifest = {
        "run_id": "r1",
        "command": "run",
        "status": "succeeded",
        "git_commit": "abc123",
        "packages": {"bertopic": "0.17.4"},
        "config_json": "{}",
    }
    args = {
        "run_id": "r1",
        "risk_rows": risk,
        "topics": topics,
        "comparison": comparison,
        "points": points,
        "manifest": manifest,
        "seed": 1,
    }
    args.update(overrides)
    return build_view(**args)


def test_heatmap_puts_clusters_in_their_cells():
    svg = heatmap_svg(
        [
            {"cluster": 4, "likelihood": "P2", "impact": "I3"},
            {"cluster": 5, "likelihood": "P2", "impact": "I3"},
            {"cluster": 6, "likelihood": "P1", "impact": None},
        ]
    )
    assert '<g class="cell" data-grade="H1" data-count="2">' in svg
    assert ">4, 5<" in svg
    assert svg.count('data-count="0"') == 11


def test_scatter_samples_large_maps_and_greys_noise():
    svg = scatter_svg([(float(i), float(i), -1 if i % 2 else 1) for i in range(7000)], seed=3)
    assert svg.count("<circle") == 6000
    assert 'fill="#c8c8c8"' in svg
    assert "No issue" in scatter_svg([], seed=3)


def test_top_risks_order_and_unrated_left_out():
    view = synthetic_view()
    assert [(t["cluster"], t["grade"]) for t in view["top_risks"]] == [(3, "H3"), (7, "H1")]
    assert top_risks([]) == []


def test_build_view_needs_risk_rows():
    with pytest.raises(ReportInputError, match="no rows in gold_risk; run `issuerisk risk r1`"):
        synthetic_view(risk_rows=[])


def test_render_escapes_labels_and_loads_nothing():
    html = render(synthetic_view())
    assert "shape &lt;mismatch&gt;" in html
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?https?:""", html)
    assert "r = 4.25" in html and "χ² = 31.50" in html


def test_chromium_renders_the_report(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(synthetic_view()), encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    assert 'data-ready="3"' in dom
    assert 'id="run-id">r1<' in dom
    for number in (
        "0.4000",
        "0.5500",
        "37.5 d",
        "12.5 h",
        "25.0 %",
        "full review",
        "H3: 1",
        "unrated (no impact value): 9",
        "abc123",
    ):
        assert number in dom, number


@pytest.mark.parametrize(
    "url", ["https://github.com/o/r/issues/1", "http://ghe.example.com/o/r/issues/2", "HTTPS://GitHub.com/o/r/issues/3"]
)
def test_http_urls_are_links(url):
    assert http_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.domain)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "javascript\n:alert(1)",
        "https://x/\u0000",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/x",
        "https:no-host",
        "/relative/path",
        "https://[::1",
        "",
        None,
        42,
    ],
)
def test_other_urls_are_not_links(url):
    assert http_url(url) is None


def _csp(html: str) -> dict[str, list[str]]:
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in policy.split(";")) if d}


def test_the_policy_admits_exactly_the_pages_script_and_style_by_hash():
    html = render(synthetic_view())
    csp = _csp(html)
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == [f"'{csp_hash(script)}'"] and csp["style-src"] == [f"'{csp_hash(style)}'"]
    assert "unsafe-inline" not in html and "style=" not in html and html.count("<script") == 1


def test_a_javascript_issue_link_is_shown_as_text_and_never_runs(tmp_path):
    evil = "javascript:alert(document.domain)"
    topics = [
        {
            "cluster": 3,
            "keywords": ["cuda"],
            "representative": ["https://github.com/o/r/issues/1", evil, "JAVASCRIPT:alert(2)"],
        },
        {"cluster": 7, "keywords": ["pip"], "representative": ["data:text/html,<script>alert(3)</script>"]},
    ]
    page = tmp_path / "report.html"
    page.write_text(render(synthetic_view(topics=topics)), encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    assert 'data-ready="3"' in dom
    hrefs = re.findall(r"""href\s*=\s*["']?([^"'\s>]*)""", dom, re.I)
    assert [h for h in hrefs if not h.startswith("#")] == ["https://github.com/o/r/issues/1"], (
        "only in-page anchors besides the one http(s) link"
    )
    assert "#2 javascript:alert(document.domain)</span>" in dom and "#3 JAVASCRIPT:alert(2)</span>" in dom
    assert "#1 data:text/html,&lt;script&gt;alert(3)&lt;/script&gt;</span>" in dom
    script_src = _csp(dom)["script-src"]
    assert script_src and all(s.startswith("'sha256-") for s in script_src)


def test_chromium_refuses_a_script_the_policy_does_not_hash(tmp_path):
    page = tmp_path / "tampered.html"
    page.write_text(render(synthetic_view()).replace('"data-ready"', '"data-tampered"'), encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert "data-tampered" not in dom.split("<script>")[0] and "data-ready" not in dom.split("<script>")[0]
    assert any("Content Security Policy" in line for line in console), console


def test_chromium_check_catches_script_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>", encoding="utf-8")
    _, console = open_in_chromium(page, tmp_path)
    assert any("undefinedFunction" in line for line in console)


@pytest.mark.slow
def test_report_stage_end_to_end_on_a_synthetic_run(ctx, spark, tmp_path):
    from issuerisk.analysis import compare, risk, topics, trends
    from issuerisk.report import report
    from tests.test_topics import RUN_ID, seed_run

    seed_run(ctx, finished=False)  # the run is still going: the report is written inside it
    ctx.run.run_id = RUN_ID
    ctx.run.save("running")
    topics.run(ctx, RUN_ID)  # as `issuerisk run` calls them: on its own, still running, run
    risk.run(ctx, RUN_ID)
    compare.run(ctx, RUN_ID)
    trended = trends.run(ctx, RUN_ID)
    result = report.run(ctx, RUN_ID, out=str(tmp_path / "out" / "r.html"))
    assert result["report"] == str(tmp_path / "out" / "r.html")
    assert [(t["cluster"], t["grade"]) for t in result["top_risks"]] == [(2, "H3"), (1, "H2"), (0, "H1")]
    dom, console = open_in_chromium(Path(result["report"]), tmp_path)
    assert console == []
    assert 'data-ready="3"' in dom
    assert trended["rows"] > 0 and dom.count('class="spark-cell"') == 3, "one small multiple per graded pattern"
    assert dom.count('<svg xmlns="http://www.w3.org/2000/svg" class="spark"') == 3
    for text in (
        "0.4500",
        "21.3 d",
        "full review",
        RUN_ID,
        "pytorch",
        "unknown are left out",
        "the runs table has its final status",
    ):
        assert text in dom, text
    assert dom.count("<circle") == 44 + 3, "the map's issues and each sparkline's peak"
    ctx.run.save("succeeded")
    default = report.run(ctx)  # the newest clustering run that succeeded
    assert default["report"].endswith(f"reports/{RUN_ID}.html") and Path(default["report"]).is_file()


def test_not_graded_clusters_have_their_own_section_and_doubtful_grades_are_marked():
    risk = [
        {
            "scope": "all",
            "cluster": 3,
            "label": "cuda / memory",
            "n": 40,
            "p_k": 0.8,
            "likelihood": "P4",
            "mttr_hours": 900.0,
            "median_ttr_hours": 100.0,
            "open_share": 0.25,
            "impact": "I3",
            "grade": "H3",
            "action": "full review",
            "grade_confidence": 0.62,
            "impact_hours": 950.0,
        },
        {
            "scope": "all",
            "cluster": 8,
            "label": "add / link / list",
            "n": 30,
            "p_k": None,
            "likelihood": None,
            "mttr_hours": 5.0,
            "median_ttr_hours": 2.0,
            "open_share": 0.1,
            "impact": None,
            "grade": None,
            "action": None,
            "defect_share": 0.1,
            "repositories": 1,
            "top_repository": "o/awesome",
            "top_repository_share": 1.0,
            "excluded_reason": "not a defect pattern: 90% feature requests (defect share 10% < 50%)",
        },
    ]
    html = render(
        build_view(
            "r2",
            risk,
            [{"cluster": 3, "name": "CUDA out of memory", "keywords": ["cuda"], "representative": []}],
            [],
            [],
            None,
            0,
            0.8,
        )
    )
    graded = html[html.index('id="cluster-table"') : html.index('id="not-graded"')]
    not_graded = html[html.index('id="not-graded"') :]
    assert 'data-cluster="3" class="doubtful"' in graded and 'data-cluster="8"' not in graded
    assert (
        'data-cluster="8"' in not_graded
        and "not a defect pattern: 90% feature requests" in not_graded
        and "o/awesome" in not_graded
    )
    assert '<li class="doubtful">' in html and "(62 % sure)" in html and "CUDA out of memory" in html


def test_report_lists_profile_warnings_and_links_the_factsheet():
    profile = [
        {
            "check": "top_repository_share",
            "scope": "all",
            "value": 0.23,
            "threshold": 0.1,
            "direction": "max",
            "warning": True,
            "message": "o/big holds 23.0 % of all issues",
            "detail_json": "{}",
        },
        {
            "check": "open_share",
            "scope": "all",
            "value": 0.2,
            "threshold": 0.5,
            "direction": "max",
            "warning": False,
            "message": "20.0 % of all issues are open",
            "detail_json": "{}",
        },
        {
            "check": "text_length",
            "scope": "all",
            "value": 300.0,
            "threshold": None,
            "direction": "info",
            "warning": False,
            "message": "median 300 characters",
            "detail_json": '{"p50": 300}',
        },
    ]
    html = render(synthetic_view(profile=profile, profile_run="r0", factsheet="r1.factsheet.html"))
    warnings = html.split('id="profile-warnings"')[1].split("</ul>")[0]
    assert "o/big holds 23.0 % of all issues (threshold 0.1)" in warnings and "open" not in warnings
    assert "newest one before it, run <code>r0</code>" in html
    assert 'href="r1.factsheet.html"' in html
    assert "No data profile was made" in render(synthetic_view())


def test_report_shades_explained_sentences_by_each_method():
    base = {
        "repository": "o/r",
        "number": 1,
        "cluster": 3,
        "similarity": 0.71,
        "agreement": 0.5,
        "seconds": 0.4,
        "completeness_gap": 0.0,
    }
    rows = [
        {
            **base,
            "unit": "sentence",
            "position": 0,
            "text": "Thanks for the library.",
            "perturbation": 0.01,
            "gradient": 0.02,
            "truncated": False,
        },
        {
            **base,
            "unit": "sentence",
            "position": 1,
            "text": "CUDA out of memory <here>.",
            "perturbation": 0.30,
            "gradient": 0.50,
            "truncated": False,
        },
        {
            **base,
            "unit": "sentence",
            "position": 2,
            "text": "Later text.",
            "perturbation": 0.0,
            "gradient": 0.0,
            "truncated": True,
        },
        {
            **base,
            "unit": "token",
            "position": 0,
            "text": "CUDA",
            "perturbation": 0.2,
            "gradient": 0.3,
            "truncated": False,
        },
    ]
    html = render(synthetic_view(explanations=rows, issue_urls={("o/r", 1): "https://github.com/o/r/issues/1"}))
    block = html.split('data-issue="o/r#1"')[1]
    assert '<span class="p3" title="+0.3000">CUDA out of memory &lt;here&gt;.</span>' in block
    assert '<span class="none" title="+0.0100">Thanks for the library.</span>' in block
    assert '<span class="cut"' in block and "agreement 0.50" in block and "CUDA (+0.300)" in block
    assert 'href="https://github.com/o/r/issues/1"' in block
    assert "No explanations for this run" in render(synthetic_view())
