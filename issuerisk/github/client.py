"""A GitHub REST client that waits out rate limits, retries faults and revalidates with ETags.

It follows GitHub's documented rules: ``X-RateLimit-Remaining``/``X-RateLimit-Reset``
per token and resource (``core``, ``search``) decide which token goes next and how
long to wait when all are spent; a secondary limit (403/429 with ``Retry-After``,
or a message naming it) pauses every thread for the time asked, at least
``secondary_wait_s`` when none is given, doubling on repeats; 5xx answers and
connection errors are retried with bounded exponential backoff and full jitter;
``If-None-Match`` turns unchanged pages into 304s that cost no quota. Clock and
sleep are injectable so tests run rate-limit scenarios without real waiting.
Tokens never leave this module: they are not in reprs, stats or error messages,
a token holding whitespace or a control character is refused before it reaches a
header (where the HTTP library would quote it in its error), and a token is sent
only to the configured API's scheme, host and port, never to another host that
a ``Link`` header names (urllib3 drops it on a redirect to another host too).
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import orjson
import urllib3
from urllib3.exceptions import HTTPError as TransportError

from issuerisk.conf.secrets import SecretFormatError, bad_character, check_secret_values, redact, url_credentials
from issuerisk.github.exceptions import GitHubStatusError, RetriesExhausted

log = logging.getLogger(__name__)

USER_AGENT = "issuerisk-crawler"
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="([^"]+)"')


def tokens_from_env(environ: Mapping[str, str]) -> list[str]:
    """Tokens from ``GITHUB_TOKENS`` (comma-separated) or else ``GITHUB_TOKEN``; empty means unauthenticated.

    Spaces around the commas are ignored; duplicates and empty items are dropped.

    Raises:
        SecretFormatError: the variable read holds whitespace (other than spaces around commas) or a
            control character, e.g. a newline between two pasted tokens; the message names the
            variable and the position, never the value.
    """
    name = "GITHUB_TOKENS" if environ.get("GITHUB_TOKENS") else "GITHUB_TOKEN"
    check_secret_values(environ, (name,))
    raw = environ.get(name) or ""
    return list(dict.fromkeys(t.strip(" ") for t in raw.split(",") if t.strip(" ")))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port defaulted by scheme: the unit a token is scoped to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def parse_links(header: str | None) -> dict[str, str]:
    """The ``Link`` header as ``{rel: url}`` (``next``, ``last``, ``prev``, ``first``)."""
    return {rel: url for url, rel in _LINK.findall(header or "")}


@dataclass(frozen=True)
class Response:
    """One successful answer: 200, or 304 with the cached body when this client had it."""

    url: str
    status: int
    data: Any
    etag: str | None
    links: dict[str, str]
    date: float | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass
class ClientStats:
    """What the client did; safe to print and store (no tokens)."""

    requests: int = 0
    not_modified: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    secondary_waits: int = 0
    wait_seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "not_modified": self.not_modified,
            "retries": self.retries,
            "rate_limit_waits": self.rate_limit_waits,
            "secondary_waits": self.secondary_waits,
            "wait_seconds": round(self.wait_seconds, 3),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
        }


@dataclass
class _Quota:
    remaining: int | None = None
    reset: float = 0.0


class _Token:
    """A credential and its quotas per resource; prints as ``token#N``."""

    def __init__(self, index: int, secret: str | None) -> None:
        self.index = index
        self.secret = secret
        self.quota: dict[str, _Quota] = {}

    def __repr__(self) -> str:
        return f"token#{self.index}" if self.secret else "unauthenticated"


def resource_of(url: str) -> str:
    """GitHub's rate-limit resource for a URL: ``search`` for /search/..., else ``core``."""
    return "search" if "/search/" in url else "core"


class GitHubClient:
    """Thread-safe GitHub REST GETs with rate limiting, retries, token rotation and an ETag cache.

    Args:
        api_url: API root, e.g. ``https://api.github.com`` or ``https://ghe.example.com/api/v3``.
        tokens: secrets to rotate; empty for unauthenticated access (60 requests/hour).
        concurrency: requests in flight at most, across all threads.
        clock: epoch seconds (``X-RateLimit-Reset`` is epoch); tests inject a fake one.
        sleep: waits; tests inject one that advances their fake clock.
    """

    def __init__(
        self,
        api_url: str,
        tokens: list[str] | tuple[str, ...] = (),
        *,
        timeout_s: float = 30.0,
        max_retries: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 120.0,
        secondary_wait_s: float = 60.0,
        concurrency: int = 4,
        etag_cache_size: int = 256,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if url_credentials(api_url):
            raise ValueError(
                f"github.api_url carries credentials ({url_credentials(api_url)}); remove them and export the token as "
                "GITHUB_TOKENS"
            )
        if not api_url.startswith(("http://", "https://")):
            raise ValueError(f"github.api_url must be an http(s) URL such as https://api.github.com, got {api_url!r}")
        for number, token in enumerate(tokens, 1):
            index = bad_character(token or "")
            if index is not None:
                raise SecretFormatError(
                    f"token #{number}", index + 1, token[index], "a token is one unbroken line of printable characters"
                )
        self.api_url = api_url.rstrip("/") + "/"
        self._origin = origin(self.api_url)
        self._tokens = [_Token(i + 1, t) for i, t in enumerate(tokens)] or [_Token(0, None)]
        self._anonymous = _Token(0, None)  # for URLs on other hosts: they get no token and touch no token's quota
        self._secrets = [t for t in tokens if t]
        if not self._secrets:
            log.warning("no GITHUB_TOKENS or GITHUB_TOKEN set: unauthenticated GitHub access allows 60 requests/hour")
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.secondary_wait_s = secondary_wait_s
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.stats = ClientStats()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._paused_until = 0.0
        self._cache: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._cache_size = etag_cache_size
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": USER_AGENT,
        }
        # urllib3 rather than httpx: a 380 kB page costs 1.4 ms of CPU against 2.4 ms (bench/crawl.py).
        # Its own retries are off (this class retries with GitHub's rules); redirects are followed.
        self._http = urllib3.PoolManager(
            maxsize=concurrency,
            block=True,
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5, raise_on_redirect=True),
        )

    @classmethod
    def from_config(cls, gh: Any, environ: Mapping[str, str], **overrides: Any) -> "GitHubClient":
        """A client from ``cfg.github`` and tokens from ``environ`` (``clock``/``sleep``/``transport`` may be
        overridden)."""
        options: dict[str, Any] = dict(
            timeout_s=gh.timeout_s,
            max_retries=gh.max_retries,
            backoff_base_s=gh.backoff_base_s,
            backoff_max_s=gh.backoff_max_s,
            secondary_wait_s=gh.secondary_wait_s,
            concurrency=gh.concurrency,
            etag_cache_size=gh.etag_cache_size,
        )
        options.update(overrides)
        return cls(gh.api_url, tokens_from_env(environ), **options)

    def __repr__(self) -> str:
        return f"GitHubClient({self.api_url!r}, tokens={len(self._secrets)})"

    def __enter__(self) -> "GitHubClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.clear()

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """Absolute URL of an API path (or an absolute URL, e.g. from a Link header) with query parameters."""
        full = path if urlsplit(path).scheme in ("http", "https") else urljoin(self.api_url, path.lstrip("/"))
        if params:
            full += ("&" if "?" in full else "?") + urlencode({k: v for k, v in params.items() if v is not None})
        return full

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, etag: str | None = None, cache: bool = True
    ) -> Response:
        """GET one API resource, waiting out rate limits and retrying faults.

        Args:
            etag: an ETag from an earlier run for ``If-None-Match``; by default the
                client's own cache supplies one (and the body on 304).
            cache: keep the parsed answer for this client's own ``If-None-Match`` revalidation;
                crawl pages pass False, since their caller keeps the ETag it needs.

        A URL on another scheme, host or port than ``api_url`` (a ``Link`` header may name any) is
        fetched without a token.

        Raises:
            GitHubStatusError: GitHub answered 4xx other than a rate limit (404, 410, 451, 422, ...).
            RetriesExhausted: 5xx answers, connection errors or secondary limits went on past ``max_retries``.
        """
        url = self.url(path, params)
        resource = resource_of(url)
        ours = origin(url) == self._origin
        if not ours:
            log.warning(
                "%s is not on the configured github.api_url host; requesting it without a token",
                redact(url, self._secrets),
            )
        cached = self._cache.get(url)
        if etag is None and cached is not None:
            etag = cached[0]
        faults = 0
        secondary = 0
        while True:
            self._wait_for_pause()
            token = self._pick_token(resource) if ours else self._anonymous
            headers = {**self._headers, "If-None-Match": etag} if etag else dict(self._headers)
            if token.secret:
                headers["Authorization"] = f"Bearer {token.secret}"
            try:
                with self._slots:
                    reply = self._http.request("GET", url, headers=headers)
            except TransportError as exc:
                faults = self._backoff(faults, url, f"{type(exc).__name__}: {redact(str(exc), self._secrets)}")
                continue
            self._count(reply.status)
            self._update_quota(token, resource, reply.headers)
            status = reply.status
            if status in (403, 429) and _is_rate_limited(reply):
                if _primary_reset(reply.headers) > self.clock():
                    continue
                secondary = self._secondary_pause(secondary, url, reply.headers)
                continue
            if status >= 500:
                faults = self._backoff(faults, url, f"HTTP {status}")
                continue
            if status == 304:
                with self._lock:
                    self.stats.not_modified += 1
                return Response(
                    reply.url or url,
                    304,
                    cached[1] if cached and cached[0] == etag else None,
                    etag,
                    parse_links(reply.headers.get("link")),
                    _http_date(reply.headers.get("date")),
                )
            if status >= 400:
                raise GitHubStatusError(status, url, redact(_message(reply), self._secrets))
            data = orjson.loads(reply.data)
            new_etag = reply.headers.get("etag")
            if new_etag and self._cache_size and cache:
                self._remember(url, new_etag, data)
            return Response(
                reply.url or url,
                status,
                data,
                new_etag,
                parse_links(reply.headers.get("link")),
                _http_date(reply.headers.get("date")),
            )

    def _remember(self, url: str, etag: str, data: Any) -> None:
        with self._lock:
            self._cache[url] = (etag, data)
            self._cache.move_to_end(url)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _count(self, status: int) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.stats.wait_seconds += seconds
            self.sleep(seconds)

    def _wait_for_pause(self) -> None:
        while True:
            with self._lock:
                left = self._paused_until - self.clock()
            if left <= 0:
                return
            self._wait(left)

    def _pick_token(self, resource: str) -> _Token:
        """The token with the most quota left for ``resource``; waits for the earliest reset when all are spent."""
        while True:
            now = self.clock()
            with self._lock:
                best, best_left, earliest = None, -1.0, float("inf")
                for token in self._tokens:
                    quota = token.quota.get(resource)
                    if quota is None or quota.remaining is None or quota.remaining > 0 or quota.reset <= now:
                        left = (
                            float("inf")
                            if quota is None or quota.remaining is None or quota.reset <= now
                            else quota.remaining
                        )
                        if left > best_left:
                            best, best_left = token, left
                    else:
                        earliest = min(earliest, quota.reset)
                if best is not None:
                    if best_left != float("inf"):
                        best.quota[resource].remaining = int(best_left) - 1
                    return best
                self.stats.rate_limit_waits += 1
            log.warning(
                "GitHub %s rate limit spent on all %d token(s); waiting %.0f s for the reset",
                resource,
                len(self._tokens),
                earliest - now + 1,
            )
            self._wait(earliest - now + 1)

    def _update_quota(self, token: _Token, resource: str, headers: Mapping[str, str]) -> None:
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        with self._lock:
            quota = token.quota.setdefault(headers.get("x-ratelimit-resource", resource), _Quota())
            try:
                quota.remaining, quota.reset = int(remaining), float(reset)
            except ValueError:
                log.warning("ignoring unparseable rate-limit headers remaining=%r reset=%r", remaining, reset)

    def _secondary_pause(self, attempt: int, url: str, headers: Mapping[str, str]) -> int:
        """Pause every thread as GitHub asks after a secondary limit; returns the attempt count."""
        if attempt >= self.max_retries:
            raise RetriesExhausted(url, attempt, "secondary rate limit persisted")
        retry_after = headers.get("retry-after")
        now = self.clock()
        if retry_after is not None and retry_after.strip().isdigit():
            seconds = float(retry_after)
        elif headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            seconds = max(0.0, float(headers["x-ratelimit-reset"]) - now)
        else:
            seconds = self.secondary_wait_s * 2**attempt
        with self._lock:
            self.stats.secondary_waits += 1
            self._paused_until = max(self._paused_until, now + seconds)
        log.warning("GitHub secondary rate limit on %s; pausing all requests for %.0f s", url, seconds)
        return attempt + 1

    def _backoff(self, attempt: int, url: str, reason: str) -> int:
        """Sleep a jittered exponential backoff before retry ``attempt + 1``, or give up."""
        if attempt >= self.max_retries:
            raise RetriesExhausted(url, attempt, reason)
        with self._lock:
            self.stats.retries += 1
        delay = self.rng.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))
        log.info("retrying %s after %s in %.1f s (attempt %d of %d)", url, reason, delay, attempt + 1, self.max_retries)
        self._wait(delay)
        return attempt + 1


def _is_rate_limited(reply: urllib3.BaseHTTPResponse) -> bool:
    if reply.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in reply.headers:
        return True
    return "rate limit" in _message(reply).lower()


def _primary_reset(headers: Mapping[str, str]) -> float:
    """The reset time of a spent primary limit (no Retry-After), else 0: such answers wait for the reset."""
    if headers.get("x-ratelimit-remaining") != "0" or "retry-after" in headers:
        return 0.0
    try:
        return float(headers.get("x-ratelimit-reset", "0"))
    except ValueError:
        return 0.0


def _message(reply: urllib3.BaseHTTPResponse) -> str:
    try:
        body = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        return reply.data[:200].decode("utf-8", "replace")
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
