"""``python -m actorbus graph``: Mermaid and DOT pictures of a system, in process."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import structlog

from actorbus.cli import main
from actorbus.describe import render_mermaid, system_graph

from ._shop import TARGET, reference_target
from ._shop import services as shop_services


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(params=["shop", "reference"])
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The self-made system, and the reference system in its choreography flow."""
    if request.param == "shop":
        return TARGET
    monkeypatch.setenv("ORDER_FLOW", "choreography")
    return reference_target()


def _graph(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["graph", *args]) == 0
    return capsys.readouterr().out


# ----------------------------------------------------------------- the contract's topology


def test_mermaid_shows_the_contract_bindings(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _graph(capsys, target)
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    assert '    ex_orders_topic{{"orders.topic (topic)"}}' in lines
    assert '    q_inventory_queue[("inventory.queue")]' in lines
    assert '    ex_orders_topic -->|"order.created.v2"| q_inventory_queue' in lines
    assert '    ex_orders_topic -->|"order.created"| q_notification_queue' in lines
    assert '    ex_orders_topic -->|"stock.reserved"| q_notification_queue' in lines
    assert '    ex_orders_topic -->|"order.created"| q_inventory_queue' not in lines
    assert '    ex_orders_topic -->|"order.created.v2"| q_notification_queue' not in lines
    assert '    svc_order -->|"order.created"| ex_orders_topic' in lines
    assert '    svc_order -->|"order.created.v2"| ex_orders_topic' in lines
    assert "    q_inventory_queue --> svc_inventory" in lines
    assert '    svc_inventory -->|"stock.reserved"| ex_orders_topic' in lines


def test_commands_and_replies_are_dashed(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _graph(capsys, TARGET).splitlines()
    assert '    svc_orchestrator -.->|"inventory.reserve-stock"| ex_actorbus_commands' in lines
    assert '    ex_actorbus_commands{{"actorbus.commands (direct)"}}' in lines
    assert '    ex_actorbus_commands -.->|"inventory.reserve-stock"| q_inventory_queue' in lines
    # The reply goes through the default exchange straight to the asking service's queue.
    assert '    svc_inventory -.->|"inventory.reserve-stock.result"| q_orchestrator_queue' in lines
    assert not any("-->" in line and "reserve-stock" in line for line in lines)
    assert not any("reserve-stock.result" in line and "ex_" in line for line in lines)


_STATEMENT = re.compile(
    r"""^\s{4}(?:
        (?P<node>[A-Za-z0-9_]+)(?:\(\[|\{\{|\[\()"[^"]*"(?:\]\)|\}\}|\)\])
      | (?P<src>[A-Za-z0-9_]+)\ (?:-->|-\.->)(?:\|"[^"]*"\|)?\ (?P<dst>[A-Za-z0-9_]+)
      | classDef\ [a-z]+\ [^\s]+
      | class\ [A-Za-z0-9_,]+\ [a-z]+
    )$""",
    re.VERBOSE,
)


def test_mermaid_is_well_formed(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _graph(capsys, target).splitlines()
    declared: set[str] = set()
    used: set[str] = set()
    for line in lines[1:]:
        match = _STATEMENT.match(line)
        assert match, f"not a Mermaid statement this renderer writes: {line!r}"
        if match["node"]:
            assert match["node"] not in declared, f"node declared twice: {line!r}"
            declared.add(match["node"])
        elif match["src"]:
            used.update((match["src"], match["dst"]))
    assert used <= declared
    assert len(lines) == len(set(lines)), "an edge is drawn twice"


def test_dot_format(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _graph(capsys, target, "--format", "dot")
    lines = out.splitlines()
    assert lines[0] == "digraph actorbus {"
    assert lines[-1] == "}"
    assert '    ex_orders_topic -> q_inventory_queue [label="order.created.v2"];' in lines
    assert '    ex_orders_topic -> q_notification_queue [label="order.created"];' in lines
    assert '    ex_orders_topic -> q_notification_queue [label="stock.reserved"];' in lines
    assert any(line.startswith('    q_inventory_queue [label="inventory.queue"') for line in lines)
    assert out.count("{") == out.count("}")


def test_dot_dashes_commands(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _graph(capsys, TARGET, "--format", "dot").splitlines()
    assert (
        '    ex_actorbus_commands -> q_inventory_queue [label="inventory.reserve-stock", '
        "style=dashed];"
    ) in lines


def test_format_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACTORBUS_GRAPH_FORMAT", "dot")
    assert _graph(capsys, TARGET).startswith("digraph actorbus {")


def test_unknown_format_from_the_environment_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACTORBUS_GRAPH_FORMAT", "svg")
    assert main(["--log-format", "json", "graph", TARGET]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown graph format 'svg': use 'mermaid' or 'dot'" in captured.err


def test_unknown_format_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["graph", TARGET, "--format", "svg"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'svg'" in capsys.readouterr().err


def test_bad_target_exits_2_with_the_resolver_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--log-format", "json", "graph", "tests.unit.cli._shpo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "module 'tests.unit.cli._shpo' not found; did you mean 'tests.unit.cli._shop'?" in (
        captured.err
    )
    assert '"event": "invalid_usage"' in captured.err


def test_help_documents_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["graph", "--help"])
    out = capsys.readouterr().out
    assert "--format" in out
    assert "ACTORBUS_GRAPH_FORMAT" in out


def test_unused_exchanges_are_left_out() -> None:
    graph = system_graph(shop_services()[2:3])  # notification alone: consumes, publishes nothing
    assert [n.name for n in graph.nodes if n.kind == "exchange"] == ["orders.topic"]
    assert "actorbus.commands" not in render_mermaid(graph)
