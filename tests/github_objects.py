"""SYNTHETIC GitHub issue objects shaped exactly like ``GET /repos/{owner}/{repo}/issues`` items.

Nothing here is real data; the real corpus is ../shared/data/lai2024-ml-issues.
"""

from __future__ import annotations

from typing import Any

API = "https://api.github.com"


def issue(
    repo: str,
    number: int,
    title: str,
    body: str | None = "",
    *,
    state: str = "open",
    created: str = "2021-03-01T10:00:00Z",
    updated: str | None = None,
    closed: str | None = None,
    login: str = "alice",
    user_type: str = "User",
    labels: tuple[str, ...] = (),
    pull_request: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One synthetic issue object with the members the REST API returns."""
    obj: dict[str, Any] = {
        "url": f"{API}/repos/{repo}/issues/{number}",
        "repository_url": f"{API}/repos/{repo}",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "id": abs(hash((repo, number))) % 10**9 + 1,
        "node_id": f"I_synthetic_{number}",
        "number": number,
        "title": title,
        "user": {"login": login, "id": 1, "type": user_type, "site_admin": False},
        "labels": [{"id": i, "name": name, "color": "ffffff"} for i, name in enumerate(labels)],
        "state": state,
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": 0,
        "created_at": created,
        "updated_at": updated or closed or created,
        "closed_at": closed,
        "author_association": "NONE",
        "body": body,
        "state_reason": "completed" if state == "closed" else None,
    }
    if pull_request:
        obj["pull_request"] = {"url": f"{API}/repos/{repo}/pulls/{number}", "merged_at": None}
    obj.update(extra)
    return obj
