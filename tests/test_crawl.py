"""The crawl and discover stages against the local fake GitHub (SYNTHETIC data, 127.0.0.1 only, fake clock).

Crawls with ``no_ingest`` need no Spark; the ingest and discover tests are ``slow``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from issuerisk.github import crawl
from issuerisk.github.checkpoints import CheckpointStore
from issuerisk.github.client import GitHubClient
from issuerisk.github.issues import raw_path
from issuerisk.lakehouse import ArrowTables
from issuerisk.stage import execute
from issuerisk.stages import REGISTRY
from tests.conftest import make_ctx
from tests.fakes.github_server import FakeClock, FakeGitHub, Fault, iso, synthetic_issues, synthetic_repos

REPO = Path(__file__).resolve().parent.parent
GOOD = {"synthetic-org/alpha": 230, "synthetic-org/beta": 120, "synthetic-org/gamma": 75}
SECRET = "ghp_synthetic_crawl_secret_42"


def light_ctx(cfg, **github):
    """A context whose Spark is never started (enough for no_ingest crawls)."""
    cfg = cfg.updated(
        "github",
        **{
            "per_page": 50,
            "concurrency": 2,
            "checkpoint_every_s": 0.0,
            "raw_dir": f"raw/{cfg.project.database}",
            **github,
        },
    )
    return make_ctx(cfg)


def raw_objects(ctx) -> list[tuple[str, int, str]]:
    """(repository, number, updated_at) of every line of every raw file, duplicates kept."""
    out = []
    for path in sorted(Path(ctx.cfg.resolve_path(ctx.cfg.github.raw_dir)).rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            obj = json.loads(line)
            out.append((obj["repository_url"].split("/repos/")[1], obj["number"], obj["updated_at"]))
    return sorted(out)


def expected(server, repos) -> list[tuple[str, int, str]]:
    return sorted((r, i["number"], i["updated_at"]) for r in repos for i in server.repos[r])


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def server(clock):
    repos = {name: synthetic_issues(name, n) for name, n in GOOD.items()}
    repos["synthetic-org/gone"] = []
    with FakeGitHub(repos, clock=clock) as gh:
        gh.set_status("synthetic-org/gone", 404, "Not Found")
        gh.set_status("synthetic-org/closed-tracker", 410, "Issues are disabled for this repo")
        gh.set_status("synthetic-org/dmca", 451, "Repository access blocked")
        yield gh


def client_for(server, clock):
    return GitHubClient(server.url, [SECRET], max_retries=4, backoff_base_s=1.0, clock=clock, sleep=clock.sleep)


ALL = [*GOOD, "synthetic-org/gone", "synthetic-org/closed-tracker", "synthetic-org/dmca"]


def test_crawl_fetches_every_object_and_records_dead_repositories(cfg, server, clock):
    ctx = light_ctx(cfg)
    server.faults += [
        Fault("/issues", 502, times=3),
        Fault("alpha/issues", 403, headers={"Retry-After": "5"}, message="secondary rate limit"),
    ]
    with client_for(server, clock) as client:
        result = crawl.run(ctx, repos=ALL, no_ingest=True, client=client)
    assert raw_objects(ctx) == expected(server, GOOD)
    assert result["objects"] == sum(GOOD.values())
    assert result["pull_requests"] == sum(n // 5 for n in GOOD.values())
    assert result["retries"] == 3 and result["secondary_waits"] == 1
    assert (
        result["status_fetched"],
        result["status_gone"],
        result["status_issues_disabled"],
        result["status_blocked"],
    ) == (3, 1, 1, 1)
    checkpoints = CheckpointStore(ArrowTables(ctx.cfg)).load()
    assert checkpoints["synthetic-org/closed-tracker"].error == "410: Issues are disabled for this repo"
    assert all(cp.next_url is None for cp in checkpoints.values())
    assert SECRET not in json.dumps(result) and SECRET not in str(checkpoints)


def test_crawl_rejects_bad_names_and_empty_selection(cfg):
    ctx = light_ctx(cfg)
    with pytest.raises(crawl.CrawlError, match="OWNER/NAME"):
        crawl.run(ctx, repos=["not-a-repo"], no_ingest=True)
    with pytest.raises(crawl.CrawlError, match="run `issuerisk discover` first"):
        crawl.run(ctx, no_ingest=True)


def test_failed_repository_resumes_from_its_last_page(cfg, server, clock):
    ctx = light_ctx(cfg)
    server.faults.append(Fault("alpha/issues?state=all&sort=created&direction=asc&per_page=50&page=3", 500, times=100))
    with client_for(server, clock) as client:
        result = crawl.run(ctx, repos=["synthetic-org/alpha"], no_ingest=True, client=client)
        assert result["failed"] == 1
        cp = CheckpointStore(ArrowTables(ctx.cfg)).load()["synthetic-org/alpha"]
        assert (
            cp.status == "in_progress"
            and cp.next_url.endswith("page=3")
            and cp.issues_fetched == 100
            and "after 4 retries" in cp.error
        )
        server.faults.clear()
        crawl.run(ctx, repos=["synthetic-org/alpha"], no_ingest=True, client=client)
    assert raw_objects(ctx) == expected(server, ["synthetic-org/alpha"])
    assert server.served("alpha/issues") == 5


_CHILD = """
import json, sys
from issuerisk.conf.loader import validate
from issuerisk.context import Context
from issuerisk.github import crawl
from issuerisk.ledger import Run
cfg = validate(json.loads(sys.argv[1]))
crawl.run(Context.open(cfg, Run(cfg, "crawl"), progress=False), repos=json.loads(sys.argv[2]), no_ingest=True)
"""


def test_killed_crawl_resumes_to_exactly_the_uninterrupted_issue_set(cfg, tmp_path):
    """SIGKILL a crawl process while its requests hang mid-way, then resume: same objects, none twice."""
    repos = {name: synthetic_issues(name, n) for name, n in GOOD.items()}
    with FakeGitHub(repos) as gh:
        gh.stall_after = 4
        ctx = light_ctx(cfg, api_url=gh.url, raw_dir=str(tmp_path / "raw"))
        env = {**os.environ, "GITHUB_TOKEN": SECRET, "PYTHONPATH": str(REPO)}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, ctx.cfg.to_json(), json.dumps(list(GOOD))], cwd=REPO, env=env
        )
        store = CheckpointStore(ArrowTables(ctx.cfg))
        try:
            assert gh.stalled.wait(60), "the crawl never reached the stall point"
            deadline = time.monotonic() + 30
            while (
                not any(cp.status == "in_progress" and cp.raw_file for cp in store.load().values())
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            gh.stall_after = None
            gh.release.set()
        before = store.load()
        assert any(cp.status == "in_progress" and cp.next_url for cp in before.values())
        partial = next(cp for cp in before.values() if cp.status == "in_progress" and cp.raw_file)
        with open(partial.raw_file, "ab") as f:
            f.write(b'{"url": "half a line the kill left beh')
        with GitHubClient(gh.url, [SECRET]) as client:
            crawl.run(ctx, repos=list(GOOD), no_ingest=True, client=client)
        resumed = raw_objects(ctx)
        fresh = light_ctx(
            cfg.updated("project", database=cfg.project.database + "_fresh"),
            api_url=gh.url,
            raw_dir=str(tmp_path / "fresh"),
        )
        with GitHubClient(gh.url, [SECRET]) as client:
            crawl.run(fresh, repos=list(GOOD), no_ingest=True, client=client)
        assert resumed == raw_objects(fresh) == expected(gh, GOOD)
        assert client.stats.requests > 0


def test_pages_written_but_never_checkpointed_are_not_kept_twice(cfg, tmp_path):
    """A kill between a page's write and its checkpoint commit leaves an orphan file: the rerun overwrites it."""
    with FakeGitHub({name: synthetic_issues(name, n) for name, n in GOOD.items()}) as gh:
        ctx = light_ctx(cfg, api_url=gh.url, raw_dir=str(tmp_path / "raw"))
        orphan = Path(raw_path(str(tmp_path / "raw"), "synthetic-org/alpha", None))
        orphan.parent.mkdir(parents=True)
        orphan.write_text(
            '{"repository_url": "x/repos/synthetic-org/alpha", "number": 1, "updated_at": "uncommitted"}\n'
        )
        with GitHubClient(gh.url, [SECRET]) as client:
            crawl.run(ctx, repos=list(GOOD), no_ingest=True, client=client)
        assert raw_objects(ctx) == expected(gh, GOOD)


@pytest.mark.slow
def test_crawl_ingests_then_reruns_incrementally_with_since_and_etag(ctx, spark, server, clock):
    ctx = make_ctx(
        ctx.cfg.updated("github", per_page=50, concurrency=2, raw_dir=f"raw/{ctx.cfg.project.database}"), spark
    )
    ctx.invoke = lambda name, **kw: execute(REGISTRY[name], ctx, kw)
    repos = list(GOOD)
    with client_for(server, clock) as client:
        first = crawl.run(ctx, repos=repos, framework="keras", client=client)
    assert first["ingested_new_issues"] == sum(GOOD.values()) and ctx.run.metrics["ingest"]["files"] == len(GOOD)
    bronze = ctx.spark.table(f"{ctx.cfg.project.database}.bronze_issues")
    assert bronze.count() == sum(GOOD.values())
    assert {r[0] for r in bronze.select("framework").distinct().collect()} == {"keras"}

    clock.now += 3600
    server.edit("synthetic-org/alpha", 7, title="Synthetic issue 7, edited")
    now = iso(clock())
    server.add(
        "synthetic-org/beta", dict(synthetic_issues("synthetic-org/beta", 121)[-1], created_at=now, updated_at=now)
    )
    clock.now += 60
    with client_for(server, clock) as client:
        second = crawl.run(ctx, repos=repos, framework="keras", client=client)
    assert (second["objects"], second["new"], second["updated"]) == (2, 1, 1)
    assert bronze.count() == sum(GOOD.values()) + 1
    assert (
        bronze.filter("repository = 'synthetic-org/alpha' AND number = 7").first()["title"]
        == "Synthetic issue 7, edited"
    )

    clock.now += 60
    with client_for(server, clock) as client:
        third = crawl.run(ctx, repos=repos, client=client)
    with client_for(server, clock) as client:
        fourth = crawl.run(ctx, repos=repos, client=client)
    assert third["objects"] == 0 and third["not_modified"] == 1, (
        "gamma was quiet in the second pass, so its empty first page revalidates"
    )
    assert fourth["objects"] == 0 and fourth["not_modified"] == len(repos)


def test_a_raw_file_cut_at_ingest_leaves_its_repository_fetched_until_all_of_it_landed(ctx, spark, server, clock):
    cfg = ctx.cfg.updated("github", per_page=50, concurrency=2, raw_dir=f"raw/{ctx.cfg.project.database}")
    small = make_ctx(cfg.updated("ingest", max_file_bytes=1 << 16), spark)
    small.invoke = lambda name, **kw: execute(REGISTRY[name], small, kw)
    with client_for(server, clock) as client:
        first = crawl.run(small, repos=["synthetic-org/alpha"], client=client)
    assert first["incomplete_repositories"] == 1 and 0 < first["ingested_new_issues"] < GOOD["synthetic-org/alpha"]
    [cp] = CheckpointStore(small.lake.arrow).load().values()
    assert cp.status == "fetched" and "file_too_large" in cp.error and "raise ingest.max_file_bytes" in cp.error
    whole = make_ctx(cfg, spark)
    whole.invoke = lambda name, **kw: execute(REGISTRY[name], whole, kw)
    with client_for(server, clock) as client:
        second = crawl.run(whole, repos=["synthetic-org/alpha"], client=client)
    assert second["incomplete_repositories"] == 0 and second["objects"] == 0, (
        "nothing is fetched again: the file is ingested again"
    )
    assert [c.status for c in CheckpointStore(whole.lake.arrow).load().values()] == ["done"]
    assert whole.spark.table(f"{cfg.project.database}.bronze_issues").count() == GOOD["synthetic-org/alpha"]


def test_discover_merges_frameworks_and_records_exclusions(cfg, clock):
    keras = synthetic_repos(30, "keras")
    shared = dict(
        keras[0],
        description="SYNTHETIC library built on keras and pytorch",
        topics=["keras", "pytorch"],
        language="Python",
        has_issues=False,
    )
    searchable = [shared, *keras[1:], *synthetic_repos(12, "pytorch")]
    with FakeGitHub(search_repos=searchable, clock=clock) as gh, client_for(gh, clock) as client:
        from issuerisk.github import discover

        ctx = light_ctx(cfg.updated("github", min_stars=0, created_from="2015-01-01"))
        result = discover.run(ctx, framework="all", client=client)
    assert not ctx.lake.spark_started, "discover writes through delta-rs and never starts Spark"
    rows = {r["repository"]: r for r in ctx.lake.arrow.read("bronze_repos").to_pylist()}
    assert result["found"] == len(rows) == sum(r["language"] == "Python" for r in searchable) == 37
    assert rows[shared["full_name"]]["frameworks"] == ["keras", "pytorch"]
    reasons = {r["excluded_reason"] for r in rows.values()}
    assert {"tutorial in name", "ui in description", "awesome in name", "issues disabled"} <= reasons
    assert result["selected"] == sum(r["excluded_reason"] is None for r in rows.values()) > 0
    assert crawl.selected_repos(ctx.lake.arrow, 3).keys() <= {
        n for n, r in rows.items() if r["excluded_reason"] is None
    }


def test_discover_rejects_bad_options(cfg):
    from issuerisk.github import discover
    from issuerisk.github.exceptions import DiscoveryError

    with pytest.raises(DiscoveryError, match="created_from must be a date YYYY-MM-DD"):
        discover.search_window("2020-13-01", None, 10, discover.date(2024, 1, 1))
    with pytest.raises(DiscoveryError, match="is before created_from"):
        discover.search_window("2020-01-01", "2019-01-01", 10, discover.date(2024, 1, 1))
    with pytest.raises(DiscoveryError, match="has no queries"):
        discover.run(light_ctx(cfg), framework="jax")
