"""Store URLs (parsing, redaction, registry) and the SQL text helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from actorbus.exceptions import ConfigurationError, UnknownStoreError
from actorbus.stores import open_store, redact
from actorbus.stores._sql import split_statements, to_numbered
from actorbus.stores._url import split_options
from actorbus.stores.sqlite import SqliteStore


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cr@t@db:5432/orders", "postgresql://app:***@db:5432/orders"),
        ("postgresql://app@db/orders", "postgresql://app@db/orders"),
        ("postgresql://db/orders?password=hunter2&x=1", "postgresql://db/orders?password=***&x=1"),
        ("sqlite:////var/lib/a.sqlite3", "sqlite:////var/lib/a.sqlite3"),
    ],
)
def test_redact_masks_passwords(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_split_options_keeps_the_driver_options_and_the_path() -> None:
    url, ours = split_options(
        "sqlite:////abs/x.sqlite3?synchronous=NORMAL&foo=1", frozenset({"synchronous"})
    )
    assert (url, ours) == ("sqlite:////abs/x.sqlite3?foo=1", {"synchronous": "NORMAL"})


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(
        UnknownStoreError, match=r"'mysql'.*postgresql://.*sqlite://.*actorbus\.stores"
    ):
        open_store("mysql://u:p@h/db")


def test_open_store_picks_by_scheme(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.sqlite3?synchronous=normal")
    assert isinstance(store, SqliteStore)
    assert store.synchronous == "NORMAL"
    assert store.path == tmp_path / "a.sqlite3"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://relative.sqlite3", "must look like sqlite:///"),
        ("sqlite:///", "names no file"),
        ("sqlite:///x.sqlite3?synchronous=OFF", "synchronous='OFF' is not supported"),
        ("sqlite:///x.sqlite3?busy_timeout=soon", "busy_timeout must be milliseconds"),
    ],
)
def test_bad_sqlite_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SqliteStore(url)


def test_placeholders_outside_literals_become_numbered() -> None:
    sql = "SELECT '?', \"a?\", x FROM t WHERE a = ? AND b = ? -- ?\n AND c = ? /* ? */"
    assert to_numbered(sql) == (
        "SELECT '?', \"a?\", x FROM t WHERE a = $1 AND b = $2 -- ?\n AND c = $3 /* ? */"
    )
    assert to_numbered("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', $1"
    assert to_numbered("SELECT $$ ? $$, ?") == "SELECT $$ ? $$, $1"
    assert to_numbered("SELECT 1") == "SELECT 1"


def test_split_statements_ignores_semicolons_in_literals_and_comments() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT ';'); -- done; really\nINSERT INTO a VALUES ('b;c');"
    assert split_statements(script) == [
        "CREATE TABLE a (x TEXT DEFAULT ';')",
        "-- done; really\nINSERT INTO a VALUES ('b;c')",
    ]
    assert split_statements("  ; -- only a comment\n") == []
