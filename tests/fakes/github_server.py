"""A local stand-in for GitHub's REST API: a real HTTP server on 127.0.0.1 in a thread.

All data here is SYNTHETIC (generated from a seed, no real repositories or
people). It emulates what GitHub documents and the crawler relies on:
``/search/repositories`` with ``q`` qualifiers (keyword, ``in:``, ``topic:``,
``language:``, ``stars:``, ``created:``), ``total_count`` over everything that
matches but items only from the first 1,000 (later pages answer 422);
``/repos/{owner}/{repo}/issues`` with ``state``, ``since``, ``sort``,
``direction``, ``per_page``/``page`` and a ``Link`` header, pull requests mixed
in; ``X-RateLimit-*`` per token and resource (``core``, ``search``) with 403
once spent; ETags answered with 304 on ``If-None-Match`` (costing no quota);
404, 410 (issues disabled) and 451 repositories; and scripted faults (5xx,
secondary limits with ``Retry-After``, dropped connections). The clock is
injectable, so rate-limit resets and ``updated_at`` of edits follow a test's
fake time.

Run it alone for benchmarks: ``python -m tests.fakes.github_server --repos 50
--issues 1000`` prints the base URL and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

SEARCH_CAP = 1000
BASE_TIME = 1546300800.0  # 2019-01-01T00:00:00Z: synthetic issues are created after it
WORDS = (
    "tensor",
    "shape",
    "gradient",
    "cuda",
    "memory",
    "loss",
    "nan",
    "layer",
    "model",
    "export",
    "onnx",
    "batch",
    "optimizer",
    "checkpoint",
    "dataloader",
    "install",
    "wheel",
    "version",
    "mismatch",
    "error",
    "training",
    "slow",
)


class FakeClock:
    """Epoch seconds that only move when told to; ``sleep`` advances them instead of waiting."""

    def __init__(self, start: float = 1704067200.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(0.0, seconds)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user(rng: random.Random) -> dict[str, Any]:
    uid = rng.randrange(1000, 9_000_000)
    login = f"synthetic-user-{uid}"
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": "User",
        "site_admin": False,
    }


def synthetic_issues(
    repo: str, n: int, seed: int = 0, pr_every: int = 5, body_chars: int = 1500
) -> list[dict[str, Any]]:
    """``n`` SYNTHETIC issue objects shaped like GitHub's list-issues items; every ``pr_every``-th is a pull request."""
    rng = random.Random(f"{repo}:{seed}")
    api = f"https://api.github.com/repos/{repo}"
    issues = []
    created = BASE_TIME
    for number in range(1, n + 1):
        created += rng.randrange(600, 86400)
        closed = created + rng.randrange(3600, 30 * 86400) if rng.random() < 0.7 else None
        updated = (closed or created) + rng.randrange(0, 86400)
        words = rng.choices(WORDS, k=max(1, int(rng.expovariate(1 / body_chars) / 7)))
        issue = {
            "url": f"{api}/issues/{number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{number}/comments",
            "events_url": f"{api}/issues/{number}/events",
            "html_url": f"https://github.com/{repo}/{'pull' if pr_every and number % pr_every == 0 else 'issues'}"
            f"/{number}",
            "id": int(hashlib.sha1(f"{repo}#{number}".encode()).hexdigest()[:12], 16),
            "node_id": f"I_synthetic_{number}",
            "number": number,
            "title": f"Synthetic issue {number}: {' '.join(rng.choices(WORDS, k=6))}",
            "user": _user(rng),
            "labels": [
                {"id": 1, "name": rng.choice(("bug", "question", "enhancement")), "color": "d73a4a", "default": True}
            ]
            if rng.random() < 0.5
            else [],
            "state": "closed" if closed else "open",
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": rng.randrange(0, 20),
            "created_at": iso(created),
            "updated_at": iso(updated),
            "closed_at": iso(closed) if closed else None,
            "author_association": "NONE",
            "active_lock_reason": None,
            "body": "SYNTHETIC. " + " ".join(words),
            "reactions": {"url": f"{api}/issues/{number}/reactions", "total_count": 0, "+1": 0, "-1": 0},
            "timeline_url": f"{api}/issues/{number}/timeline",
            "performed_via_github_app": None,
            "state_reason": "completed" if closed else None,
        }
        if pr_every and number % pr_every == 0:
            issue["pull_request"] = {
                "url": f"{api}/pulls/{number}",
                "html_url": f"https://github.com/{repo}/pull/{number}",
                "diff_url": f"https://github.com/{repo}/pull/{number}.diff",
                "merged_at": None,
            }
        issues.append(issue)
    return issues


def synthetic_repos(
    n: int, keyword: str, seed: int = 0, start: str = "2016-01-01", days: int = 2000
) -> list[dict[str, Any]]:
    """``n`` SYNTHETIC search items mentioning ``keyword``, created one day apart or closer, stars descending with
    noise."""
    rng = random.Random(f"{keyword}:{seed}")
    t0 = datetime.fromisoformat(start).replace(tzinfo=timezone.utc).timestamp()
    kinds = (
        "model zoo",
        "training toolkit",
        "tutorial notebooks",
        "web UI",
        "library",
        "awesome list",
        "research code",
    )
    repos = []
    for i in range(n):
        created = t0 + (i * days * 86400 / max(n, 1)) + rng.randrange(0, 3600)
        kind = kinds[i % len(kinds)]
        name = f"{keyword}-{kind.split()[0]}-{i}"
        repos.append(
            {
                "id": 10_000 + i,
                "full_name": f"synthetic-org-{i % 37}/{name}",
                "name": name,
                "owner": {"login": f"synthetic-org-{i % 37}"},
                "description": f"SYNTHETIC {kind} built on {keyword}",
                "language": "Python" if i % 9 else "Jupyter Notebook",
                "stargazers_count": 100 + rng.randrange(0, 5000),
                "created_at": iso(created),
                "pushed_at": iso(created + 86400 * 30),
                "topics": [keyword, "deep-learning"] if i % 3 == 0 else ["machine-learning"],
                "has_issues": i % 11 != 5,
                "fork": False,
                "archived": False,
                "html_url": f"https://github.com/synthetic-org-{i % 37}/{name}",
            }
        )
    return repos


@dataclass
class Fault:
    """A scripted failure for the next ``times`` requests whose path and query contain ``path``.

    ``drop`` closes the connection without an answer; otherwise the server answers
    ``status`` with ``headers`` and ``message`` (e.g. 403 + Retry-After for a secondary limit).
    """

    path: str
    status: int = 502
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Server Error"
    drop: bool = False


@dataclass
class _Quota:
    limit: int
    remaining: int
    reset: float


class FakeGitHub:
    """The fake API; start with ``with FakeGitHub(...) as gh:`` and point the crawler at ``gh.url``.

    Args:
        repos: full_name -> issue objects (see :func:`synthetic_issues`).
        search_repos: items that ``/search/repositories`` searches.
        clock: epoch seconds for rate-limit windows, ``Date`` and edits (a :class:`FakeClock` in tests).
        core_limit / search_limit: requests per window per token; unauthenticated gets 60 / 10.
        latency_s: real seconds each request takes.
        link_base: base URL that ``Link`` headers name instead of this server's own (another
            server's, to test that a client does not send its token there).

    ``headers_seen`` keeps every request's headers, in order.

    Set ``stall_after`` to N to make every issues request after the N-th hang until ``release`` is set
    (``stalled`` is set when the first one hangs): a crawl stuck mid-way, ready to be killed.
    """

    def __init__(
        self,
        repos: dict[str, list[dict[str, Any]]] | None = None,
        search_repos: list[dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
        core_limit: int = 5000,
        search_limit: int = 30,
        core_window_s: float = 3600.0,
        search_window_s: float = 60.0,
        latency_s: float = 0.0,
        link_base: str | None = None,
    ) -> None:
        self.repos = {name: list(items) for name, items in (repos or {}).items()}
        self.search_repos = list(search_repos or [])
        self.clock = clock
        self.limits = {"core": (core_limit, core_window_s), "search": (search_limit, search_window_s)}
        self.latency_s = latency_s
        self.link_base = link_base
        self.headers_seen: list[dict[str, str]] = []
        self.repo_status: dict[str, tuple[int, str]] = {}
        self.faults: list[Fault] = []
        self.stall_after: int | None = None
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.requests: list[tuple[str, str, int]] = []
        self.auth_seen: set[str] = set()
        self._quotas: dict[tuple[str, str], _Quota] = {}
        self._encoded: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeGitHub":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def set_status(self, repo: str, status: int, message: str) -> None:
        """Make a repository answer ``status`` (404 gone, 410 issues disabled, 451 blocked)."""
        self.repo_status[repo] = (status, message)

    def edit(self, repo: str, number: int, **changes: Any) -> None:
        """Change an issue now (by the server's clock), bumping its ``updated_at``."""
        with self._lock:
            issue = next(i for i in self.repos[repo] if i["number"] == number)
            issue.update(changes, updated_at=iso(self.clock()))
            self._encoded.pop((repo, number), None)

    def add(self, repo: str, issue: dict[str, Any]) -> None:
        with self._lock:
            self.repos[repo].append(issue)

    def served(self, path_part: str, status: int = 200) -> int:
        """How many requests whose path contains ``path_part`` were answered ``status``."""
        with self._lock:
            return sum(1 for _, path, code in self.requests if path_part in path and code == status)

    def _quota(self, who: str, resource: str) -> _Quota:
        limit, window = self.limits[resource]
        if who == "":
            limit = 60 if resource == "core" else 10
        now = self.clock()
        quota = self._quotas.get((who, resource))
        if quota is None or now >= quota.reset:
            quota = self._quotas[(who, resource)] = _Quota(limit, limit, float(int(now + window)))
        return quota

    def _fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _encode(self, repo: str, issue: dict[str, Any]) -> str:
        key = (repo, issue["number"])
        text = self._encoded.get(key)
        if text is None:
            text = self._encoded[key] = json.dumps(issue, separators=(",", ":"))
        return text

    def answer(self, path: str, query: dict[str, str], base: str) -> tuple[int, dict[str, str], str]:
        """Status, headers and JSON body for a GET (rate limits and ETags are applied by the handler)."""
        if path == "/search/repositories":
            return self._search(query, base)
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "repos" and parts[3] == "issues":
            return self._issues(f"{parts[1]}/{parts[2]}", query, base, path)
        return 404, {}, json.dumps({"message": "Not Found"})

    def _issues(self, repo: str, query: dict[str, str], base: str, path: str) -> tuple[int, dict[str, str], str]:
        if repo in self.repo_status:
            status, message = self.repo_status[repo]
            return status, {}, json.dumps({"message": message})
        if repo not in self.repos:
            return 404, {}, json.dumps({"message": "Not Found"})
        state = query.get("state", "open")
        since = query.get("since")
        sort_key = "updated_at" if query.get("sort") == "updated" else "created_at"
        with self._lock:
            items = [
                i
                for i in self.repos[repo]
                if (state == "all" or i["state"] == state) and (since is None or i["updated_at"] >= since)
            ]
            items.sort(key=lambda i: (i[sort_key], i["number"]), reverse=query.get("direction", "desc") == "desc")
            page, per_page, links = _paginate(len(items), query, base + path)
            chosen = items[(page - 1) * per_page : page * per_page]
            body = "[" + ",".join(self._encode(repo, i) for i in chosen) + "]"
        return 200, links, body

    def _search(self, query: dict[str, str], base: str) -> tuple[int, dict[str, str], str]:
        q = query.get("q", "")
        matches = [r for r in self.search_repos if _matches(r, q)]
        matches.sort(key=lambda r: (-r["stargazers_count"], r["full_name"]))
        page, per_page, links = _paginate(min(len(matches), SEARCH_CAP), query, base + "/search/repositories")
        if (page - 1) * per_page >= SEARCH_CAP:
            return 422, {}, json.dumps({"message": "Only the first 1000 search results are available"})
        items = matches[:SEARCH_CAP][(page - 1) * per_page : page * per_page]
        return 200, links, json.dumps({"total_count": len(matches), "incomplete_results": False, "items": items})


def _paginate(total: int, query: dict[str, str], base: str) -> tuple[int, int, dict[str, str]]:
    per_page = min(100, max(1, int(query.get("per_page", 30))))
    page = max(1, int(query.get("page", 1)))
    last = max(1, -(-total // per_page))

    def link(p: int) -> str:
        return base + "?" + urlencode({**query, "page": p})

    rels = {"first": 1, "prev": page - 1} if page > 1 else {}
    if page < last:
        rels.update(next=page + 1, last=last)
    header = ", ".join(f'<{link(p)}>; rel="{rel}"' for rel, p in rels.items())
    return page, per_page, {"Link": header} if header else {}


def _matches(repo: dict[str, Any], q: str) -> bool:
    fields = ("name", "description", "topics")
    words, rules = [], []
    for term in q.split():
        key, _, value = term.partition(":")
        if not value:
            words.append(term.lower())
        elif key == "in":
            fields = tuple("topics" if f == "readme" else f for f in value.split(","))
        else:
            rules.append((key, value))
    text = " ".join(" ".join(repo[f]) if f == "topics" else str(repo.get(f) or "") for f in fields).lower()
    if any(w not in text for w in words):
        return False
    for key, value in rules:
        if key == "topic" and value not in repo["topics"]:
            return False
        if key == "language" and (repo["language"] or "").lower() != value.lower():
            return False
        if key == "stars" and not _in_range(repo["stargazers_count"], value, int):
            return False
        if key == "created" and not _in_range(repo["created_at"][:10], value, str):
            return False
    return True


def _in_range(actual: Any, spec: str, kind: type) -> bool:
    if ".." in spec:
        lo, hi = spec.split("..")
        return (lo == "*" or actual >= kind(lo)) and (hi == "*" or actual <= kind(hi))
    for op, test in (
        (">=", lambda a, b: a >= b),
        ("<=", lambda a, b: a <= b),
        (">", lambda a, b: a > b),
        ("<", lambda a, b: a < b),
    ):
        if spec.startswith(op):
            return test(actual, kind(spec[len(op) :]))
    return actual == kind(spec)


def _handler(api: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def date_time_string(self, timestamp: float | None = None) -> str:
            return email.utils.formatdate(api.clock() if timestamp is None else timestamp, usegmt=True)

        def do_GET(self) -> None:
            if api.latency_s:
                time.sleep(api.latency_s)
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            with api._lock:
                api.headers_seen.append(dict(self.headers))
            if (
                api.stall_after is not None
                and split.path.endswith("/issues")
                and api.served("/issues") >= api.stall_after
            ):
                api.stalled.set()
                api.release.wait(60)
                self.close_connection = True
                return
            fault = api._fault(self.path)
            if fault is not None and fault.drop:
                self._record(split.path, 0)
                self.close_connection = True
                self.connection.shutdown(2)
                return
            auth = self.headers.get("Authorization", "")
            who = auth.split(" ", 1)[1] if " " in auth else ""
            resource = "search" if split.path.startswith("/search/") else "core"
            base = api.link_base or f"http://{self.headers.get('Host')}"
            with api._lock:
                if who:
                    api.auth_seen.add(who)
                quota = api._quota(who, resource)
            rate = {
                "X-RateLimit-Limit": str(quota.limit),
                "X-RateLimit-Reset": str(int(quota.reset)),
                "X-RateLimit-Resource": resource,
            }
            if fault is not None:
                self._send(
                    fault.status,
                    {**rate, "X-RateLimit-Remaining": str(quota.remaining), **fault.headers},
                    json.dumps({"message": fault.message}),
                    split.path,
                )
                return
            if quota.remaining <= 0:
                self._send(
                    403,
                    {**rate, "X-RateLimit-Remaining": "0"},
                    json.dumps({"message": "API rate limit exceeded (synthetic)"}),
                    split.path,
                )
                return
            status, headers, body = api.answer(split.path, query, base)
            etag = f'W/"{hashlib.sha1(body.encode()).hexdigest()}"'
            if status == 200 and self.headers.get("If-None-Match") == etag:
                self._send(
                    304,
                    {**rate, "X-RateLimit-Remaining": str(quota.remaining), "ETag": etag, **headers},
                    "",
                    split.path,
                )
                return
            with api._lock:
                quota.remaining -= 1
            extra = {"ETag": etag} if status == 200 else {}
            self._send(
                status, {**rate, "X-RateLimit-Remaining": str(quota.remaining), **extra, **headers}, body, split.path
            )

        def _record(self, path: str, status: int) -> None:
            with api._lock:
                api.requests.append(("GET", path, status))

        def _send(self, status: int, headers: dict[str, str], body: str, path: str) -> None:
            data = body.encode()
            self._record(path, status)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if status != 304:
                self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve SYNTHETIC repositories for benchmarks; prints the base URL, stops when stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--issues", type=int, default=1000, help="issues per repository")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repos = {
        f"synthetic-org/repo-{i}": synthetic_issues(f"synthetic-org/repo-{i}", args.issues, args.seed)
        for i in range(args.repos)
    }
    with FakeGitHub(repos, core_limit=10**9) as api:
        for name, items in repos.items():
            for issue in items:
                api._encode(name, issue)
        print(api.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
