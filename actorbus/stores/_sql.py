"""SQL text helpers: one placeholder style (``?``) for every store, and statement splitting.

Applications write ``?`` placeholders; PostgreSQL wants ``$1, $2, …``. :func:`to_numbered`
rewrites the ``?`` that stand outside string literals, quoted identifiers, comments and
dollar-quoted bodies, so ``'what?'`` and ``-- why?`` are left alone. Results are cached: a
service runs the same few statements over and over.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ("split_statements", "to_numbered")


def _scan(sql: str) -> list[tuple[int, str]]:
    """Return ``(index, char)`` of every ``?`` and ``;`` outside literals and comments."""
    found: list[tuple[int, str]] = []
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            # A quoted literal or identifier; a doubled quote is an escaped quote.
            i += 1
            while i < n:
                if sql[i] == c:
                    if i + 1 < n and sql[i + 1] == c:
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == "$":
            # A PostgreSQL dollar-quoted body: $$...$$ or $tag$...$tag$.
            end_tag = sql.find("$", i + 1)
            tag = sql[i : end_tag + 1] if end_tag > 0 else ""
            if tag and (tag == "$$" or tag[1:-1].replace("_", "a").isalnum()):
                close = sql.find(tag, end_tag + 1)
                i = n if close < 0 else close + len(tag)
            else:
                i += 1
        else:
            if c in "?;":
                found.append((i, c))
            i += 1
    return found


@lru_cache(maxsize=1024)
def to_numbered(sql: str) -> str:
    """Return ``sql`` with each ``?`` placeholder replaced by ``$1``, ``$2``, … in order.

    Args:
        sql: A statement written with ``?`` placeholders.

    Returns:
        The statement for PostgreSQL.
    """
    marks = [i for i, c in _scan(sql) if c == "?"]
    if not marks:
        return sql
    out: list[str] = []
    last = 0
    for number, i in enumerate(marks, start=1):
        out.append(sql[last:i])
        out.append(f"${number}")
        last = i + 1
    out.append(sql[last:])
    return "".join(out)


def split_statements(sql: str) -> list[str]:
    """Split a script into statements at the ``;`` outside literals and comments.

    Args:
        sql: One or more statements.

    Returns:
        The non-empty statements, stripped, without their terminating ``;``.
    """
    parts: list[str] = []
    last = 0
    for i, c in _scan(sql):
        if c == ";":
            parts.append(sql[last:i])
            last = i + 1
    parts.append(sql[last:])
    return [p.strip() for p in parts if p.strip() and not _only_comments(p)]


def _only_comments(sql: str) -> bool:
    text = sql.strip()
    while text:
        if text.startswith("--"):
            end = text.find("\n")
            text = "" if end < 0 else text[end + 1 :].strip()
        elif text.startswith("/*"):
            end = text.find("*/")
            text = "" if end < 0 else text[end + 2 :].strip()
        else:
            return False
    return True
