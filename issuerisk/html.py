"""Rendering a self-contained HTML page: Jinja2 templates beside this module, safe links, and hashes for the page's
policy.

Every page the tool writes (the run report, the tuning page, the factsheet)
loads nothing: its Content-Security-Policy is ``default-src 'none'`` and admits
its own inline style sheet and script by their SHA-256 hashes, and only
absolute http(s) URLs become links.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TEMPLATES = Path(__file__).resolve().parent / "templates"
LINK_SCHEMES = ("http", "https")


def http_url(url: Any) -> str | None:
    """``url`` when it is an absolute http(s) URL the report may link to, else None.

    Anything else (``javascript:``, ``data:``, scheme-relative ``//host``, a URL with whitespace or
    control characters, which browsers strip before reading the scheme) is shown as text, never as
    an ``href``: a ``javascript:`` link would run in the reader's browser.
    """
    if not isinstance(url, str) or not url or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return url if parts.scheme.lower() in LINK_SCHEMES and parts.netloc else None


def csp_hash(text: str) -> str:
    """The Content-Security-Policy source (``sha256-...``) that admits an inline script or style of exactly ``text``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(str(text).encode("utf-8")).digest()).decode("ascii")


def render_page(template: str, **view: Any) -> str:
    """A template of :data:`TEMPLATES` rendered with the filters every page uses (hours, pct, http_url, csp_hash)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined
    )
    env.filters["hours"] = lambda h: "" if h is None else (f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} d")
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f} %"
    env.filters["http_url"] = http_url
    env.filters["csp_hash"] = csp_hash
    return env.get_template(template).render(**view)


def factsheet_name(run_id: str) -> str:
    """File name of a run's factsheet, written beside its report."""
    return f"{run_id}.factsheet.html"
