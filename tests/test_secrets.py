"""Secrets handling: malformed values refused by name, every escaped form redacted, credentials found in URLs (SYNTHETIC
values)."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

import pytest
import urllib3

from issuerisk.conf.secrets import SecretFormatError, check_secret_values, env_secrets, redact, url_credentials

TOKEN_A = "ghp_SYNTHETICaaaa0001"
TOKEN_B = "ghp_SYNTHETICbbbb0002"
PASTED = f"{TOKEN_A}\n{TOKEN_B}"  # two tokens pasted on two lines: the value that leaked in issue 15
ODD = "sk-SYNTHETIC/é+key=ü'\"\\"  # a secret with characters that every encoding changes


def test_the_reported_header_error_is_redacted_whole_and_by_piece():
    with pytest.raises(ValueError) as err:  # the real error urllib3/http.client raise for such a header
        urllib3.PoolManager(retries=False).request(
            "GET", "http://127.0.0.1:9/", headers={"Authorization": f"Bearer {PASTED}"}
        )
    message = f"{type(err.value).__name__}: {err.value}"
    assert "\\n" in message  # escaped, so the raw value is not in it
    secrets = env_secrets({"GITHUB_TOKENS": PASTED})
    assert redact(message, secrets) == "ValueError: Invalid header value b'Bearer ***'"
    assert redact(json.dumps({"error": message}), secrets) == json.dumps(
        {"error": "ValueError: Invalid header value b'Bearer ***'"}
    )


@pytest.mark.parametrize(
    "form",
    [
        lambda s: s,
        lambda s: repr(s),
        lambda s: ascii(s),
        lambda s: repr(s.encode()),
        lambda s: json.dumps(s),
        lambda s: json.dumps(s, ensure_ascii=False),
        lambda s: quote(s, safe=""),
        lambda s: quote(s),
        lambda s: quote_plus(s),
        lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(s, safe="")),
        lambda s: json.dumps(repr(s.encode())),
        lambda s: json.dumps(quote_plus(s)),
    ],
    ids=[
        "raw",
        "repr",
        "ascii",
        "bytes_repr",
        "json",
        "json_utf8",
        "quote",
        "quote_slash",
        "quote_plus",
        "quote_lowercase_hex",
        "json_of_bytes_repr",
        "json_of_quote_plus",
    ],
)
@pytest.mark.parametrize("secret", [ODD, PASTED], ids=["odd_characters", "with_newline"])
def test_every_form_of_a_secret_is_redacted(form, secret):
    shown = form(secret)
    assert "SYNTHETIC" in shown
    out = redact(f"before {shown} after", [secret])
    assert out.startswith("before ") and out.endswith(" after") and "***" in out and "SYNTHETIC" not in out


def test_a_secret_with_a_newline_is_redacted_when_split_or_joined():
    secrets = env_secrets({"GITHUB_TOKENS": PASTED})
    assert redact(f"line one {TOKEN_A}\nline two {TOKEN_B}", secrets) == "line one ***\nline two ***"
    assert redact(f"only {TOKEN_B} here", secrets) == "only *** here"
    assert redact(" ".join(PASTED.split()), secrets) == "*** ***"
    assert redact(f"only {TOKEN_B} here", [PASTED]) == "only *** here"  # redact splits it too


def test_env_secrets_holds_the_whole_value_each_token_and_each_piece():
    env = {
        "GITHUB_TOKENS": f"{TOKEN_A}, {TOKEN_B}",
        "OPENAI_API_KEY": "sk-SYNTHETIC3",
        "GITHUB_TOKEN": "short",
        "HOME": "/root/ghp_SYNTHETIC",
    }
    assert env_secrets(env) == [f"{TOKEN_A}, {TOKEN_B}", TOKEN_A, TOKEN_B, "sk-SYNTHETIC3"]
    assert redact(f"GITHUB_TOKENS={TOKEN_A}, {TOKEN_B} and short", env_secrets(env)) == "GITHUB_TOKENS=*** and short"
    assert redact(quote(f"{TOKEN_A}, {TOKEN_B}"), env_secrets(env)) == "***"


def test_the_metastore_password_is_redacted_though_it_may_hold_spaces():
    env = {"ISSUERISK_METASTORE_PASSWORD": "synthetic pass word"}
    check_secret_values(env)  # not a token: spaces are allowed
    message = "FATAL: password authentication failed for 'synthetic pass word'"
    assert redact(message, env_secrets(env)) == "FATAL: password authentication failed for '***'"


def test_redact_leaves_text_without_secrets_alone():
    assert redact("nothing secret here", []) == "nothing secret here"
    assert redact("nothing secret here", ["", TOKEN_A]) == "nothing secret here"


@pytest.mark.parametrize(
    ("env", "variable", "position", "what"),
    [
        ({"GITHUB_TOKENS": PASTED}, "GITHUB_TOKENS", len(TOKEN_A) + 1, "a newline (U+000A)"),
        ({"GITHUB_TOKENS": f"{TOKEN_A},{TOKEN_B}\n"}, "GITHUB_TOKENS", 2 * len(TOKEN_A) + 2, "a newline (U+000A)"),
        ({"GITHUB_TOKEN": f"{TOKEN_A}\t"}, "GITHUB_TOKEN", len(TOKEN_A) + 1, "a tab (U+0009)"),
        ({"GITHUB_TOKENS": f"{TOKEN_A} {TOKEN_B}"}, "GITHUB_TOKENS", len(TOKEN_A) + 1, "a space (U+0020)"),
        (
            {"GITHUB_TOKENS": f"{TOKEN_A}, ghp_SYN\x00THETIC"},
            "GITHUB_TOKENS",
            len(TOKEN_A) + 10,
            "an unprintable character (U+0000)",
        ),
        ({"OPENAI_API_KEY": "sk-SYNTHETIC\r\n"}, "OPENAI_API_KEY", 13, "a carriage return (U+000D)"),
        ({"OPENAI_API_KEY": " sk-SYNTHETIC"}, "OPENAI_API_KEY", 1, "a space (U+0020)"),
        ({"OPENAI_API_KEY": "sk-SYN\u200bTHETIC"}, "OPENAI_API_KEY", 7, "ZERO WIDTH SPACE (U+200B)"),
    ],
)
def test_malformed_secret_values_are_refused_by_name_and_position(env, variable, position, what):
    with pytest.raises(SecretFormatError) as err:
        check_secret_values(env)
    message = str(err.value)
    assert message.startswith(f"{variable} holds ") and what in message and f"at character {position};" in message
    assert (err.value.variable, err.value.position) == (variable, position)
    value = next(iter(env.values()))
    assert not any(piece in message for piece in value.replace("\x00", " ").split() if len(piece) >= 4)


def test_spaces_around_commas_and_empty_items_are_tolerated():
    check_secret_values(
        {"GITHUB_TOKENS": f" {TOKEN_A} , {TOKEN_B},,", "GITHUB_TOKEN": TOKEN_A, "OPENAI_API_KEY": "sk-SYNTHETIC"}
    )
    check_secret_values(
        {"OPENAI_API_KEY": "sk SYNTHETIC"}, names=("GITHUB_TOKENS",)
    )  # only the named variables are checked


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("https://user:sk-SYNTHETIC@llm.example/v1", "a user:password@ part"),
        ("https://sk-SYNTHETIC@llm.example/v1", "a user@ part"),
        ("https://llm.example/v1?api_key=sk-SYNTHETIC", "the query parameter 'api_key'"),
        ("https://ghe.example/api/v3?access_token=x", "the query parameter 'access_token'"),
        ("https://h.example/?key=x", "the query parameter 'key'"),
        ("https://h.example/?X-Amz-Signature=x", "the query parameter 'X-Amz-Signature'"),
        ("https://h.example/openai?api-version=2024-02-01", None),
        ("http://127.0.0.1:8000/v1", None),
        ("s3a://bucket/warehouse", None),
        (None, None),
    ],
)
def test_url_credentials_names_the_place_not_the_value(url, found):
    assert url_credentials(url) == found


def test_redacting_filter_cleans_messages_arguments_and_tracebacks():
    import io
    import logging

    from issuerisk.conf.secrets import RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(env_secrets({"GITHUB_TOKENS": PASTED})))
    log = logging.getLogger("tests.secrets.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("header %r refused", f"Bearer {PASTED}")
        try:
            raise ValueError(f"Invalid header value {PASTED.encode()!r}")
        except ValueError:
            log.exception("request failed for %s", TOKEN_B)
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "header 'Bearer ***' refused" in text and "request failed for ***" in text
    assert "ValueError: Invalid header value b'***'" in text and "SYNTHETIC" not in text
