"""What every throwaway server of the test suite shares: start on enter, close on exit."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

__all__ = ("ServerProcess",)


class ServerProcess:
    """Base of the process managers (RabbitMQ node and cluster, PostgreSQL cluster).

    ``with Server(...) as server:`` starts it and closes it (stopped, its directories
    removed) on the way out; a start that fails part-way closes what it had started.
    Subclasses implement :meth:`start` and :meth:`close`.
    """

    def start(self) -> None:
        """Start the server; return once it accepts clients."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and delete what it wrote."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
