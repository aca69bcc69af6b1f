"""Broker URL parsing, and credential redaction for every log line and error message.

Nothing outside this module formats a broker URL for humans: logs and exceptions show
``redact(url)``, which never raises and never lets a password through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from ..exceptions import ConfigurationError

__all__ = ("BrokerURL", "parse_url", "redact", "scheme_of")

_MASK = "***"

# user:password@ right after "scheme://", anywhere in the string (also in query values such
# as ``?failover=amqp://u:p@host2``). The password runs to the last "@" of the authority.
_USERINFO = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.\-]*://|^)(?P<userinfo>[^/?#\s]*@)")

# Query parameters whose values are secrets.
_SECRET_PARAM = re.compile(
    r"(?P<key>(?:^|[?&;])(?:[^=&;#]*?)"
    r"(?:password|passwd|pass|pwd|secret|token|apikey|api_key|api-key|credentials?|auth))"
    r"=(?P<value>[^&;#]*)",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match["userinfo"][:-1]  # without the "@"
    user, sep, _password = userinfo.partition(":")
    if not sep:
        return match[0]  # a user without a password is not a secret
    return f"{match['prefix']}{user}:{_MASK}@"


def redact(url: str) -> str:
    """Return ``url`` with every password replaced by ``***``; safe to log.

    Redacts the password of the URL's user info (``amqp://guest:***@host/``), user info of
    URLs nested in the query string, and the values of secret-looking query parameters
    (``password``, ``token``, ``secret``, …). Never raises, whatever the input.

    Args:
        url: A broker URL, possibly malformed.

    Returns:
        The URL with credentials masked.
    """
    try:
        text = _USERINFO.sub(_mask_userinfo, url)
        return _SECRET_PARAM.sub(lambda m: f"{m['key']}={_MASK}", text)
    except Exception:  # pragma: no cover - defensive: redaction must never raise
        return "<unprintable broker URL>"


def scheme_of(url: str) -> str:
    """Return the lower-cased scheme of ``url`` (``"amqp"`` for ``"AMQP://host"``).

    Raises:
        ConfigurationError: ``url`` has no ``scheme://`` prefix.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
        raise ConfigurationError(
            f"not a broker URL: {redact(url)!r}; expected 'scheme://…', "
            "e.g. 'memory://' or 'amqp://user:password@localhost:5672/'"
        )
    return scheme.lower()


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """The parts of a broker URL, percent-decoded.

    Attributes:
        scheme: Lower-cased scheme, e.g. ``"amqp"``.
        host: Host name or address; ``""`` if absent.
        port: The port, or ``None`` if absent.
        username: Decoded user name, or ``None``.
        password: Decoded password, or ``None``. Never log it; log :attr:`redacted`.
        path: The path without its leading ``/`` (the AMQP virtual host), decoded.
        query: Query parameters, last value wins.
        redacted: The whole URL with credentials masked.
    """

    scheme: str
    host: str = ""
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    redacted: str = ""


def parse_url(url: str) -> BrokerURL:
    """Split a broker URL into its parts.

    Args:
        url: E.g. ``"amqp://user:pa%40ss@rabbit:5672/orders?heartbeat=30"``.

    Returns:
        The parsed URL; its ``redacted`` form is safe to log.

    Raises:
        ConfigurationError: The URL has no scheme or an invalid port; the message shows the
            redacted URL only.
    """
    scheme = scheme_of(url)
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"invalid broker URL {shown!r}: {exc}") from None
    return BrokerURL(
        scheme=scheme,
        host=parts.hostname or "",
        port=port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=unquote(parts.path[1:] if parts.path.startswith("/") else parts.path),
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        redacted=shown,
    )
