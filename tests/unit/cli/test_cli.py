"""The command line, in process: parsing, target resolution, exact usage errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import actorbus
from actorbus.cli import main
from actorbus.cli._imports import TargetError, resolve_services
from actorbus.cli._run import _allowed_hosts

REPO = Path(actorbus.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway package `shop` with two service modules, importable from the cwd."""
    pkg = tmp_path / "shop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from shop.inventory import service as inventory\n"
        "from shop.billing import service as billing\n"
        "services = [inventory, billing]\n"
    )
    for name in ("inventory", "billing"):
        (pkg / f"{name}.py").write_text(
            textwrap.dedent(
                f"""
                from actorbus import Service
                service = Service({name!r})
                """
            )
        )
    (pkg / "broken.py").write_text("import not_a_real_dependency_xyz\n")
    (pkg / "empty.py").write_text("value = 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[mod]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    commands = out.split("commands:", 1)[1]
    for name in ("run", "asyncapi", "graph", "schema", "dlq"):
        listed = [line for line in commands.splitlines() if line.split()[:1] == [name]]
        assert len(listed) == 1, f"{name!r} listed {len(listed)} times in --help"
    assert out.count("\n    run ") + out.count("\n  run ") == 1  # once, not in a second list
    assert "--log-level" in out


def test_library_log_records_use_the_same_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from actorbus.cli._logging import configure_logging

    try:
        configure_logging("info", "json")
        logging.getLogger("uvicorn.error").warning("port %d in use", 8000)
        structlog.get_logger("actorbus.app").warning("app_started", queues=1)
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "port 8000 in use"
    assert lines[0]["logger"] == "uvicorn.error"
    assert lines[0]["level"] == "warning"
    assert lines[1]["event"] == "app_started"
    assert set(lines[0]) >= {"event", "level", "timestamp"}
    assert set(lines[1]) >= {"event", "level", "timestamp"}


def test_run_help_documents_contract_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag, env in [
        ("--broker", "ACTORBUS_BROKER"),
        ("--http", "ACTORBUS_HTTP"),
        ("--data-dir", "ACTORBUS_DATA_DIR"),
    ]:
        assert flag in out
        assert env in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_resolves_a_package_list_and_a_single_module(project: Path) -> None:
    assert [s.name for s in resolve_services("shop")] == ["inventory", "billing"]
    assert [s.name for s in resolve_services("shop.inventory")] == ["inventory"]
    assert [s.name for s in resolve_services("shop:inventory")] == ["inventory"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("shop.invntory", "module 'shop.invntory' not found; did you mean 'shop.inventory'?"),
        ("shop.zzz", "module 'shop.zzz' not found$"),
        ("shop.broken", "module 'shop.broken' failed to import: No module named"),
        ("shop.empty", "defines neither 'services' nor 'service'"),
        ("shop:inventroy", "has no attribute 'inventroy'; did you mean 'inventory'?"),
        ("shop.empty:value", "is int, not a Service"),
        (":x", "invalid target"),
    ],
)
def test_bad_targets_get_exact_messages(project: Path, target: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        resolve_services(target)


def test_bad_target_exits_2_with_the_reason(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--log-format", "json", "run", "shop.invntory"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'shop.inventory'?" in err
    assert '"event": "invalid_usage"' in err


def test_unknown_broker_scheme_exits_2_listing_known_schemes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--log-format", "json", "run", "shop", "--broker", "kafka://u:secret@h/"])
    assert code == 2
    err = capsys.readouterr().err
    assert "kafka" in err
    assert "memory://" in err
    assert "secret" not in err


def test_bad_http_address_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--log-format", "json", "run", "shop", "--http", "nonsense", "--data-dir", "d"])
    assert code == 2
    assert "invalid HTTP address 'nonsense'" in capsys.readouterr().err


def test_console_allowed_hosts_come_from_the_flags_else_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACTORBUS_CONSOLE_ALLOWED_HOSTS", " ops.example.com, proxy.example:8443,")
    assert _allowed_hosts(None) == ["ops.example.com", "proxy.example:8443"]
    assert _allowed_hosts(["a.example", "b.example,c.example"]) == [
        "a.example",
        "b.example",
        "c.example",
    ]
    monkeypatch.delenv("ACTORBUS_CONSOLE_ALLOWED_HOSTS")
    assert _allowed_hosts(None) == []
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--console-allowed-host" in out
    assert "ACTORBUS_CONSOLE_ALLOWED_HOSTS" in out


def test_bad_console_allowed_host_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--log-format", "json", "run", "shop", "--console-allowed-host", "https://x.example"]
    assert main([*args, "--data-dir", "d"]) == 2
    assert "invalid console allowed host 'https://x.example'" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"actorbus {actorbus.__version__}"


def test_services_outside_the_repository_says_where_the_reference_system_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != REPO])
    monkeypatch.delitem(sys.modules, "services", raising=False)
    with pytest.raises(TargetError, match=r"module 'services' not found in .*repository"):
        resolve_services("services")
