"""Building blocks shared by the reference services: tables in the App's store, HTTP helpers.

Not a service itself: ``python -m actorbus run services.common`` has nothing to run.
"""

from __future__ import annotations

__all__ = ()
