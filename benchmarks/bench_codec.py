"""Codec: actorbus encode and typed decode per message, against bare msgspec.json.

actorbus side: the codec's ``encode`` (the shared ``msgspec.json.Encoder``) and the decode
function the pipeline calls per delivery, ``registry.decoder("order.created").decode(body,
version)`` (size check, header version check, typed decode; msgspec itself checks the
payload's ``schemaVersion``, a ``Literal``). Baseline: one ``msgspec.json.Encoder`` /
``msgspec.json.Decoder(PlainOrderCreated)`` on a plain Struct with the same fields. The
ratio is a *cost* ratio: actorbus time per message over bare msgspec's (lower is better).
"""

from __future__ import annotations

import time

import msgspec

from actorbus.messages import MessageRegistry

from ._common import OrderCreated, PlainOrderCreated, Settings, make_events, make_plain
from ._stats import CaseResult, Sample, interleaved_sync

__all__ = ("run",)

_TARGET = 1.2


def run(settings: Settings) -> list[CaseResult]:
    """Measure encode and decode per message; return one row each."""
    registry = MessageRegistry()
    registry.register(OrderCreated)
    # The codec's own encode, as Outgoing.build calls it on the publish path (not the
    # registry.encode convenience, which adds a Python call).
    encode = registry.codec.encode
    decode = registry.decoder("order.created").decode
    bare_encode = msgspec.json.Encoder().encode
    bare_decode = msgspec.json.Decoder(PlainOrderCreated).decode

    count = settings.count(200_000)
    events = make_events(count)
    plain = make_plain(count)
    bodies = [encode(e) for e in events]
    plain_bodies = [bare_encode(p) for p in plain]
    size = sum(map(len, bodies)) // count

    def ab_encode(n: int) -> Sample:
        items = events[:n]
        t0 = time.perf_counter()
        for item in items:
            encode(item)
        return Sample(n, time.perf_counter() - t0)

    def bare_encode_round(n: int) -> Sample:
        items = plain[:n]
        t0 = time.perf_counter()
        for item in items:
            bare_encode(item)
        return Sample(n, time.perf_counter() - t0)

    def ab_decode(n: int) -> Sample:
        items = bodies[:n]
        t0 = time.perf_counter()
        for body in items:
            decode(body, 1)  # the x-schema-version header, as the pipeline passes it
        return Sample(n, time.perf_counter() - t0)

    def bare_decode_round(n: int) -> Sample:
        items = plain_bodies[:n]
        t0 = time.perf_counter()
        for body in items:
            bare_decode(body)
        return Sample(n, time.perf_counter() - t0)

    rounds = max(settings.rounds, 5)  # cheap: a few more rounds steady the medians
    results = []
    for case, subject, baseline in (
        ("codec.encode", ab_encode, bare_encode_round),
        ("codec.decode", ab_decode, bare_decode_round),
    ):
        series = interleaved_sync(
            {"actorbus": subject, "bare msgspec": baseline},
            rounds=rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=case,
        )
        results.append(
            CaseResult(
                case,
                "-",
                series["actorbus"],
                series["bare msgspec"],
                kind="cost",
                target=_TARGET,
                note=f"{size}-byte OrderCreated v1; ratio = time per message (lower is better)",
            )
        )
    return results
