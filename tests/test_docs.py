"""The guide in ``docs/`` runs as written: every Python sample, every command line.

Rules for samples, as a reader meets them:

- Each ```` ```python ```` block of a page runs after the blocks before it on the same page,
  in one namespace, like a reader's session. A block that defines ``async def main()`` gets
  it awaited; a block that defines ``async def test_…()`` functions without parameters gets
  each of them awaited, as pytest would.
- ``<!-- file: NAME.py -->`` right before a block says the reader saves it as ``NAME.py``
  (blocks with the same name are appended to each other). Those files are written to a
  temporary directory on ``sys.path``, so a later block can ``import`` them, and the
  tutorial's module is also run with ``python -m actorbus run`` in a subprocess.
- ``<!-- skip: needs RabbitMQ -->`` right before a block is the only allowed skip: the block
  runs under the ``amqp`` marker, with ``ACTORBUS_BROKER`` set to the test RabbitMQ's URL
  (samples read it with ``os.environ.get("ACTORBUS_BROKER", …)``).
- Every ``python -m actorbus …`` line in a shell block must parse with the real CLI parser,
  and ``docs/cli.md`` must name every option and environment variable of that parser.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from actorbus.cli import main as cli_main
from actorbus.cli._parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
AMQP_ENV = "ACTORBUS_BROKER"
SKIP_REASONS = frozenset({"needs RabbitMQ"})

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile(r"<!--\s*(skip|file):\s*(.*?)\s*-->\s*\Z")


@dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    lang: str
    source: str
    line: int
    skip: str | None = None
    file: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)

    @property
    def python(self) -> list[Block]:
        return [b for b in self.blocks if b.lang == "python"]


def parse_page(path: Path) -> Page:
    """Return the fenced blocks of ``path`` with the HTML-comment marks right before them."""
    text = path.read_text(encoding="utf-8")
    page = Page(path)
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        block = Block(path, match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1)
        mark = _MARK.search(before)
        if mark is not None:
            kind, value = mark.groups()
            if kind == "skip":
                block.skip = value
            else:
                block.file = value
        page.blocks.append(block)
    return page


PARSED = [parse_page(p) for p in PAGES]
PYTHON_CASES = [
    pytest.param(
        page,
        index,
        id=f"{page.path.stem}-{index}",
        marks=[pytest.mark.amqp] if block.skip else [],
    )
    for page in PARSED
    for index, block in enumerate(page.python)
]


def test_the_guide_has_its_pages() -> None:
    names = {p.stem for p in PAGES}
    expected = {"index", "concepts", "tutorial", "events", "testing", "rabbitmq", "benchmarks"}
    assert expected | {"cli"} <= names


def test_only_rabbitmq_samples_are_skipped() -> None:
    for page in PARSED:
        for block in page.blocks:
            if block.skip is not None:
                assert block.skip in SKIP_REASONS, f"{block.where}: skip {block.skip!r}"
                assert block.lang == "python", f"{block.where}: only Python samples are skipped"
                assert AMQP_ENV in block.source, (
                    f"{block.where}: a RabbitMQ sample must read its URL from {AMQP_ENV}"
                )


def test_samples_use_only_the_public_api() -> None:
    allowed = re.compile(
        r"^actorbus(\.app|\.testing|\.exceptions|\.stores|\.describe|\.observe|\.brokers"
        r"|\.messages)?$"
    )
    for page in PARSED:
        for block in page.python:
            for module in re.findall(r"^\s*(?:from|import)\s+(actorbus[\w.]*)", block.source, re.M):
                assert allowed.match(module), f"{block.where}: imports {module}"


def test_samples_do_not_sleep() -> None:
    for page in PARSED:
        for block in page.python:
            assert not re.search(r"\b(anyio|asyncio|time)\.sleep\(", block.source), (
                f"{block.where}: wait for a probe instead of sleeping"
            )


def _files(page: Page, upto: int) -> dict[str, str]:
    files: dict[str, str] = {}
    for block in page.python[: upto + 1]:
        if block.file:
            files[block.file] = files.get(block.file, "") + block.source + "\n"
    return files


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory on ``sys.path``; modules imported from it are forgotten after."""
    monkeypatch.chdir(tmp_path)  # samples may create ./.actorbus
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in list(os.environ):
        if name.startswith("ACTORBUS_") and name != "ACTORBUS_TEST_AMQP_URL":
            monkeypatch.delenv(name)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.mark.anyio
@pytest.mark.parametrize(("page", "index"), PYTHON_CASES)
async def test_sample_runs(
    page: Page,
    index: int,
    sandbox: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    block = page.python[index]
    if block.skip:
        monkeypatch.setenv(AMQP_ENV, request.getfixturevalue("amqp_url"))
    for name, text in _files(page, index).items():
        (sandbox / name).write_text(text, encoding="utf-8")
    namespace: dict[str, Any] = {"__name__": f"docs_{page.path.stem}"}
    for earlier in page.python[: index + 1]:
        code = compile(
            "\n" * earlier.line + earlier.source, str(page.path), "exec", dont_inherit=True
        )
        exec(code, namespace)
    defined = set(re.findall(r"^async def (\w+)\(\s*\)", block.source, re.M))
    if "main" in defined:
        await namespace["main"]()
    for name in sorted(defined):
        if name.startswith("test_"):
            await namespace[name]()


# ---------------------------------------------------------------------- command lines


_SHELL = frozenset({"|", "&&", "||", ";", ">", ">>", "2>", "2>&1", "<", "&"})


def _command_lines(program: str) -> list[tuple[Block, list[str]]]:
    found = []
    for page in PARSED:
        for block in page.blocks:
            if block.lang not in ("sh", "bash", "console", "shell"):
                continue
            text = block.source.replace("\\\n", " ")
            for raw in text.splitlines():
                line = raw.strip().removeprefix("$ ")
                if f"python -m {program}" not in line:
                    continue
                words = shlex.split(line, comments=True)
                start = words.index("-m") + 2
                assert words[start - 1] == program, f"{block.where}: {line}"
                end = next((i for i, w in enumerate(words[start:], start) if w in _SHELL), None)
                found.append((block, words[start:end]))
    return found


ACTORBUS_LINES = _command_lines("actorbus")


def test_the_guide_shows_command_lines() -> None:
    commands = {words[0] for _, words in ACTORBUS_LINES if words}
    assert {"run", "graph", "schema", "asyncapi", "dlq"} <= commands


@pytest.mark.parametrize(
    ("block", "words"),
    [pytest.param(b, w, id=f"{b.page.stem}:{' '.join(w)[:60]}") for b, w in ACTORBUS_LINES],
)
def test_command_line_parses(block: Block, words: list[str]) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse's way of saying "usage error"
        pytest.fail(f"{block.where}: `python -m actorbus {' '.join(words)}` does not parse ({exc})")
    assert getattr(args, "handler", None) is not None, f"{block.where}: no command in {words}"


def _walk(parser: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))
        else:
            yield path, action


def test_the_cli_page_names_every_command_option_and_variable() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = []
    for path, action in _walk(build_parser()):
        if action.dest == "help":
            continue
        command = " ".join(path)
        if command and f"`{command}" not in text:
            missing.append(f"command {command!r}")
        for option in action.option_strings:
            if option.startswith("--") and f"`{option}" not in text:
                missing.append(f"{command or '(global)'} {option}")
        for variable in re.findall(r"ACTORBUS_[A-Z_]+", action.help or ""):
            if variable not in text:
                missing.append(f"{command} {variable}")
    assert not missing, f"docs/cli.md does not mention: {sorted(set(missing))}"


def test_benchmark_command_lines_use_real_options() -> None:
    lines = _command_lines("benchmarks")
    if not lines:
        pytest.skip("the guide shows no benchmark command")
    shown = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for block, words in lines:
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in shown, f"{block.where}: unknown option {word}"


# ----------------------------------------------------------------------- generated text


def test_the_graph_shown_is_the_graph_of_the_reference_system(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORDER_FLOW", raising=False)
    monkeypatch.chdir(ROOT)
    assert cli_main(["--log-level", "error", "graph", "services"]) == 0
    graph = capsys.readouterr().out.strip()
    shown = [b.source.strip() for p in PARSED for b in p.blocks if b.lang == "mermaid"]
    assert graph in shown, "docs: paste the output of `python -m actorbus graph services`"


# Written in parallel by other contributors (issue #7); drop from this set once they exist.
_PENDING: frozenset[Path] = frozenset()


def test_relative_links_point_at_files() -> None:
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for page in PAGES:
        for target in link.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve()
            assert path.exists() or path in _PENDING, f"{page.name}: broken link {target}"


def test_anchors_point_at_headings() -> None:
    link = re.compile(r"\]\(([\w./-]*\.md)?#([\w-]+)\)")
    for page in PAGES:
        for target, anchor in link.findall(page.read_text(encoding="utf-8")):
            linked = (page.parent / target) if target else page
            if not linked.exists():
                continue
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{page.name}: no heading for #{anchor} in {linked.name}"


# ------------------------------------------------------------- the tutorial, as a process


def _tutorial_files() -> dict[str, str]:
    page = next(p for p in PARSED if p.path.stem == "tutorial")
    return _files(page, len(page.python) - 1)


def _read_lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def _wait_for_event(lines: queue.Queue[str], event: str, seen: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            return dict(record)
    pytest.fail(f"no {event!r} log line; the process said:\n{''.join(seen)}")


@pytest.mark.slow
def test_the_tutorial_service_runs_from_the_command_line(tmp_path: Path) -> None:
    """`python -m actorbus run cafe`, a curl-like POST, the handler's log line, Ctrl-C, 0."""
    for name, text in _tutorial_files().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORBUS_")}
    command = [sys.executable, "-m", "actorbus", "--log-format", "json", "run", "cafe"]
    process = subprocess.Popen(
        [*command, "--http", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        ready = _wait_for_event(lines, "actorbus_ready", seen)
        answer = httpx.post(
            f"{ready['http']}/orders", json={"orderId": "o-1", "drink": "flat white"}, timeout=10
        )
        assert answer.status_code == 202, answer.text
        brewed = _wait_for_event(lines, "coffee_brewed", seen)
        assert brewed["order_id"] == "o-1"
        assert brewed["correlation_id"] == "o-1"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
