"""Who may use an ``issuerisk serve`` server: Spark Connect's pre-shared token, where it is kept, and the URL a client
uses.

``serve`` requires a token of every Spark Connect client (Spark's own pre-shared-key interceptor, which refuses
a call without it before any plan runs) and of every read-only check request. The token is
``ISSUERISK_SERVE_TOKEN``, else ``spark.extra['spark.connect.authenticate.token']``, else a new random one; serve
writes it to ``serve.token_file`` (mode 0600, in a 0700 folder), where ``issuerisk sql`` and a notebook of the
same user read it. It reaches the server's JVM through the environment (``SPARK_CONNECT_AUTHENTICATE_TOKEN``),
never through its command line, and the run ledger records it redacted.

PySpark's Connect client sends a token in clear only to ``localhost``; to any other host it insists on TLS
(``use_ssl=true``), so a server that listens beyond the loopback interface needs a TLS-terminating proxy in front.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from pathlib import Path

from issuerisk.conf import Config
from issuerisk.conf.settings import CONNECT_TOKEN_KEY, REDACTED
from issuerisk.constants import LOOPBACK_HOSTS
from issuerisk.lakehouse.read_only import DEFAULT_REMOTE, endpoints

TOKEN_ENV = "ISSUERISK_SERVE_TOKEN"
SPARK_TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
"""What Spark Connect's server (and PySpark's Connect client) read the pre-shared token from."""
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]{16,512}")


class TokenError(RuntimeError):
    """The Spark Connect token is badly shaped, or its file is not private to this user."""


def token_path(cfg: Config) -> Path:
    """``serve.token_file``, else ``$XDG_CONFIG_HOME/issuerisk/serve-<port>.token`` (``~/.config/issuerisk/...``)."""
    if cfg.serve.token_file:
        return Path(os.path.expanduser(cfg.serve.token_file)).absolute()
    _, port, _ = endpoints(cfg.spark.remote or DEFAULT_REMOTE)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "issuerisk" / f"serve-{port}.token"


def configured_token(cfg: Config) -> str | None:
    """The token given by the environment (``ISSUERISK_SERVE_TOKEN``) or ``spark.extra``, or None.

    Raises:
        TokenError: it is not 16 to 512 URL-safe characters (it travels inside ``sc://`` URLs and headers).
    """
    token = os.environ.get(TOKEN_ENV) or cfg.spark.extra.get(CONNECT_TOKEN_KEY)
    if not token or token == REDACTED:
        return None
    if not _TOKEN_SHAPE.fullmatch(token):
        raise TokenError(
            f"the Spark Connect token (from {TOKEN_ENV} or spark.extra['{CONNECT_TOKEN_KEY}']) must be 16 to 512 "
            "characters of "
            "A-Z a-z 0-9 . _ ~ + / = -; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (the folder made 0700 when created), atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def server_token(cfg: Config) -> str:
    """The token a new server requires: the configured one, else a new random one; written to :func:`token_path`."""
    token = configured_token(cfg) or secrets.token_urlsafe(32)
    write_private(token_path(cfg), token + "\n")
    return token


def client_token(cfg: Config) -> str | None:
    """The token a client sends: the configured one, else the token file's, else None (no server wrote one).

    Raises:
        TokenError: the token file can be read by other users, or is not a regular file of this user.
    """
    token = configured_token(cfg)
    if token:
        return token
    path = token_path(cfg)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not path.is_file() or path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise TokenError(
            f"{path} must be a regular file of this user readable by nobody else (chmod 600 {path}); "
            "restart issuerisk serve to write a new one"
        )
    return path.read_text().strip() or None


def client_url(remote: str, token: str | None) -> str:
    """The ``sc://`` URL a client connects with: ``localhost`` for a loopback server (PySpark sends a token in clear
    only there), TLS for any other host, and the token when there is one."""
    host, port, _ = endpoints(remote)
    url = f"sc://localhost:{port}/" if host in LOOPBACK_HOSTS else f"sc://{host}:{port}/;use_ssl=true"
    return url + (f";token={token}" if token else "")


def authorized(header: str | None, token: str) -> bool:
    """Whether an HTTP ``Authorization`` header carries ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
