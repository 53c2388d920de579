"""Secrets come only from the environment; these helpers keep them out of messages, tables and logs.

Three things keep secrets out: :func:`check_secret_values` refuses a malformed value before any client
sends it (a token with a line break is what ends up quoted in an HTTP library's exception);
:func:`url_credentials` finds credentials written into a URL, so configuration can refuse them; and
:func:`redact` blanks every secret out of a message in each form an exception, ``repr``, JSON or a URL
can give it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

SECRET_VARIABLES = ("GITHUB_TOKEN", "GITHUB_TOKENS", "OPENAI_API_KEY")
# redacted like the others but not format-checked: a database password may hold spaces
REDACTED_VARIABLES = (*SECRET_VARIABLES, "ISSUERISK_METASTORE_PASSWORD")
TOKEN_LISTS = ("GITHUB_TOKEN", "GITHUB_TOKENS")  # comma-separated, spaces around the commas ignored
MIN_SECRET_LENGTH = 8  # shorter values (and shorter pieces of a value) would blank ordinary words out of messages
REDACTED = "***"
CREDENTIAL_QUERY_WORDS = ("key", "token", "secret", "password", "signature", "sig", "auth", "credential")
_ESCAPE_DEPTH = 2  # an escaped form escaped once more: a bytes repr inside an exception message stored as JSON


class SecretFormatError(ValueError):
    """A secret variable holds whitespace or a control character (a line break between two pasted tokens).

    The message names the variable, the position and the character, never the value.

    Attributes:
        variable: the environment variable (or ``token #N`` for tokens passed in code).
        position: 1-based character position of the first bad character in its value.
    """

    def __init__(self, variable: str, position: int, character: str, hint: str) -> None:
        super().__init__(f"{variable} holds {describe_character(character)} at character {position}; {hint}")
        self.variable = variable
        self.position = position


def describe_character(ch: str) -> str:
    """A character's name for an error message (``a newline (U+000A)``), never the character itself."""
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", " ": "a space"}
    name = names.get(ch) or (
        f"the character {unicodedata.name(ch)}" if unicodedata.name(ch, "") else "an unprintable character"
    )
    return f"{name} (U+{ord(ch):04X})"


def bad_character(value: str) -> int | None:
    """0-based index of the first whitespace or non-printable (control, format) character, or None."""
    for index, ch in enumerate(value):
        if _breaks(ch):
            return index
    return None


def check_secret_values(environ: Mapping[str, str], names: Iterable[str] = SECRET_VARIABLES) -> None:
    """Refuse secret variables that hold whitespace or control characters.

    ``GITHUB_TOKEN`` and ``GITHUB_TOKENS`` are comma-separated lists: spaces around a comma or at
    either end are ignored (``tok1, tok2``), as the clients have always read them; anything else,
    such as a newline between two pasted tokens, a tab or a space inside a token, is refused.
    ``OPENAI_API_KEY`` is one value and may hold no whitespace at all.

    Raises:
        SecretFormatError: for the first bad variable, naming it and the position, never the value.
    """
    for name in names:
        value = environ.get(name)
        if not value:
            continue
        if name in TOKEN_LISTS:
            offset = 0
            for number, item in enumerate(value.split(","), 1):
                start = len(item) - len(item.lstrip(" "))
                index = bad_character(item.strip(" "))
                if index is not None:
                    raise SecretFormatError(
                        name,
                        offset + start + index + 1,
                        item.strip(" ")[index],
                        f"it is in token {number} of the comma-separated list; separate tokens with commas only "
                        f"({name}=tok1,tok2) and remove line breaks, tabs and spaces inside a token",
                    )
                offset += len(item) + 1
        else:
            index = bad_character(value)
            if index is not None:
                raise SecretFormatError(
                    name,
                    index + 1,
                    value[index],
                    f"{name} is one value: remove the line breaks, tabs and spaces (a pasted key often ends in a "
                    "newline)",
                )


def url_credentials(url: str | None) -> str | None:
    """What credential a URL carries (``a user:password@ part``, ``the query parameter 'key'``), or None.

    Names the place, never the value, so a caller can put it in an error message.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed host ("[::1"): look for a user@ part by hand
        return "a user@ part" if "@" in url.split("://", 1)[-1].split("/", 1)[0] else None
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        return "a user:password@ part" if ":" in userinfo else "a user@ part"
    for key, _value in parse_qsl(parts.query, keep_blank_values=True):
        words = re.split(r"[^a-z]+", key.lower())
        if any(word in CREDENTIAL_QUERY_WORDS for word in words) or key.lower().endswith(("key", "token")):
            return f"the query parameter {key!r}"
    return None


def env_secrets(environ: Mapping[str, str]) -> list[str]:
    """Every secret in ``environ``, longest first: each variable's whole value, each comma-separated token
    and each piece of a value broken by whitespace or control characters (pieces under 8 characters are left)."""
    found: set[str] = set()
    for name in REDACTED_VARIABLES:
        value = environ.get(name) or ""
        found.update((value, value.strip()))
        found.update(_pieces(value))
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=lambda s: (-len(s), s))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``.

    Each secret is caught raw and in every form a message can give it: ``repr``/``ascii`` escaped
    (``\\n``, ``\\x..``, ``\\u....``), inside a bytes repr ``b'...'``, JSON-escaped, URL-encoded
    (``quote`` and ``quote_plus``), and each of those escaped once more. A secret broken by a line
    break or commas is also caught piece by piece, so a message that shows only one of two
    pasted tokens loses it too.
    """
    pattern = _pattern(tuple(sorted({s for s in secrets if s})))
    return pattern.sub(REDACTED, text) if pattern is not None else text


class RedactingFilter(logging.Filter):
    """A logging filter for a handler: every record's message (and traceback) leaves with the secrets redacted.

    Installed on a handler, it covers the records of every logger that handler serves.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = redact(record.getMessage(), self.secrets), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text, self.secrets)
        return True


def _breaks(ch: str) -> bool:
    return ch.isspace() or not ch.isprintable()


def _pieces(value: str) -> set[str]:
    """The parts of a value between whitespace, commas and non-printable characters, 8 characters or longer."""
    marked = "".join("," if _breaks(ch) else ch for ch in value)
    return {p for p in marked.split(",") if len(p) >= MIN_SECRET_LENGTH}


def _escapes(text: str) -> set[str]:
    """The forms one round of escaping or encoding gives ``text``."""
    quoted = {quote(text, safe=""), quote(text), quote_plus(text)}
    return {
        repr(text)[1:-1],
        ascii(text)[1:-1],
        repr(text.encode("utf-8", "backslashreplace"))[2:-1],
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        *quoted,
        *(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), q) for q in quoted),
    }


@functools.lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        level = {secret} | _pieces(secret)
        forms |= level
        for _ in range(_ESCAPE_DEPTH):
            level = {escaped for form in level for escaped in _escapes(form)} - forms
            forms |= level
    forms.discard("")
    if not forms:
        return None
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))
