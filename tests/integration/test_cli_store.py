"""``run --store URL`` (env ``ACTORBUS_STORE``): parsing, the fallback, and failures at start."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from actorbus.cli import main
from actorbus.cli._options import resolve_store
from actorbus.cli._parser import build_parser


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway module `till` with one service, importable from the cwd."""
    (tmp_path / "till.py").write_text(
        textwrap.dedent(
            """
            from actorbus import Service

            service = Service("till")
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ACTORBUS_STORE", raising=False)
    return tmp_path


def test_store_option_is_parsed(project: Path) -> None:
    args = build_parser().parse_args(["run", "till", "--store", "sqlite:///d/till.sqlite3"])
    assert args.store == "sqlite:///d/till.sqlite3"


def test_without_store_the_default_is_sqlite_under_the_data_dir(project: Path) -> None:
    args = build_parser().parse_args(["run", "till", "--data-dir", "d"])
    assert args.store == ""  # resolved once the data directory is known
    assert resolve_store(args.store, Path(args.data_dir)) == "sqlite:///d/store.sqlite3"
    assert resolve_store("", Path("/srv/data")) == "sqlite:////srv/data/store.sqlite3"


def test_store_none_opts_out(project: Path) -> None:
    assert resolve_store("none", Path("d")) is None
    assert resolve_store("OFF", Path("d")) is None
    assert resolve_store("postgresql://a@h/db", Path("d")) == "postgresql://a@h/db"


def test_store_falls_back_to_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTORBUS_STORE", "postgresql://app:pw@db/orders")
    assert build_parser().parse_args(["run", "till"]).store == "postgresql://app:pw@db/orders"
    args = build_parser().parse_args(["run", "till", "--store", "sqlite:///x.sqlite3"])
    assert args.store == "sqlite:///x.sqlite3"  # the command line wins


def test_unknown_store_scheme_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--log-format", "json", "run", "till", "--http", "off", "--store", "mongo://u:s3cret@h/"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "no store for URL scheme 'mongo'" in err
    assert "s3cret" not in err


def test_store_unavailable_at_start_exits_1(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = project / "not-a-directory"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/till.sqlite3"
    assert main(["--log-format", "json", "run", "till", "--http", "off", "--store", url]) == 1
    err = capsys.readouterr().err
    assert '"event": "store_unavailable"' in err
    assert "cannot open" in err


def test_postgres_down_at_start_exits_1_without_the_password(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"postgresql://app:s3cret@127.0.0.1:{port}/orders?connect_timeout=2"
    assert main(["--log-format", "json", "run", "till", "--http", "off", "--store", url]) == 1
    err = capsys.readouterr().err
    assert '"event": "store_unavailable"' in err
    assert f"127.0.0.1:{port}" in err
    assert "s3cret" not in err
