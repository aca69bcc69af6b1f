"""Store URL parsing and credential redaction.

Nothing in the store layer formats a store URL for humans without :func:`redact`, so a password
never reaches a log line or an exception message. (The broker layer has its own, richer
``brokers/_url.py``; the store layer may not import the broker layer, so this is the small copy
of the same idea.)
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

__all__ = ("redact", "scheme_of", "split_options")

_MASK = "***"
# user:password@ right after "scheme://"; the password runs to the last "@" of the authority.
_USERINFO = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/?#\s:@]*):[^/?#\s]*@")
_SECRET_PARAM = re.compile(
    r"(?P<key>(?:^|[?&;])[^=&;#]*?(?:password|passwd|pass|pwd|secret|token|sslkey))=[^&;#]*",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """Return ``url`` with its password (and secret-looking query values) masked; never raises.

    Args:
        url: A store URL, possibly malformed.

    Returns:
        The URL, safe to log: ``postgresql://app:***@db:5432/orders``.
    """
    try:
        text = _USERINFO.sub(lambda m: f"{m['prefix']}{m['user']}:{_MASK}@", url)
        return _SECRET_PARAM.sub(lambda m: f"{m['key']}={_MASK}", text)
    except Exception:  # pragma: no cover - defensive: redaction must never raise
        return "<unprintable store URL>"


def scheme_of(url: str) -> str:
    """Return the lower-cased scheme of ``url`` (``""`` if it has none)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def split_options(url: str, known: frozenset[str]) -> tuple[str, dict[str, str]]:
    """Remove actorbus's own query parameters from ``url``.

    Args:
        url: The store URL.
        known: The parameter names the store interprets itself (``schema``, ``pool_max``, …).

    Returns:
        The URL without those parameters (the rest stay, for the driver) and their values.
    """
    # Split by hand: urlsplit/urlunsplit would turn ``sqlite:////abs`` into ``sqlite:///abs``.
    base, _, query = url.partition("?")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in known:
            ours[key] = value
        else:
            rest.append((key, value))
    return (f"{base}?{urlencode(rest)}" if rest else base), ours
