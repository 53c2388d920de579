"""Named errors of the GitHub crawler; none of their messages ever holds a token."""

from __future__ import annotations


class GitHubError(Exception):
    """Base class of the crawler's errors."""


class GitHubStatusError(GitHubError):
    """GitHub answered a 4xx that is not a rate limit (404 gone, 410 issues disabled, 451 blocked, 422 invalid).

    Attributes:
        status: the HTTP status.
        url: the requested URL (never carries a token: tokens travel in headers).
        message: GitHub's ``message`` field.
    """

    def __init__(self, status: int, url: str, message: str) -> None:
        super().__init__(f"GitHub answered {status} for {url}: {message or 'no message'}")
        self.status = status
        self.url = url
        self.message = message


class RetriesExhausted(GitHubError):
    """A request kept failing (5xx, connection error, secondary limit) past the configured retries."""

    def __init__(self, url: str, attempts: int, reason: str) -> None:
        super().__init__(
            f"giving up on {url} after {attempts} retries ({reason}); raise github.max_retries or rerun later to resume"
        )
        self.url = url
        self.attempts = attempts
        self.reason = reason


class DiscoveryError(GitHubError):
    """Discovery was asked for something it cannot do (unknown framework, bad date range)."""
