"""actorbus benchmarks: the messaging core against the raw client underneath, in one run.

Run ``python -m benchmarks [--quick] [--broker URL] [--json FILE]``. Every case measures
actorbus and a baseline in the same process, on the same broker, with the same settings,
with their rounds interleaved, and reports the ratio of the two; absolute numbers on a
shared machine are noisy, ratios much less so. See ``benchmarks/README.md``.
"""

from __future__ import annotations

__all__ = ()
