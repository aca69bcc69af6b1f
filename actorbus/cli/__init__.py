"""The command line: ``python -m actorbus …``. Thin; it sits on top of every other layer."""

from __future__ import annotations

from collections.abc import Sequence

from ._options import EXIT_USAGE
from ._parser import build_parser

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` by default); return the exit code.

    Exit codes: 0 clean stop, 1 a supervisor gave up or the broker failed, 2 usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    code: int = handler(args)
    return code
