"""``POST /orders`` and ``GET /orders/{orderId}``: the front door of the order flow.

Shared by the Order service (choreography) and the Order orchestrator (orchestration). Both keep
their orders in the App's store: ``POST /orders`` writes the order and what it sets going (the
``order.created`` events, or the first command of the orchestrator's saga) in one
``ctx.transaction()``, and concurrent requests share COMMITs.

Validation decisions: unknown fields are refused (422) rather than ignored, so a typo such as
``"quantity"`` cannot turn into a silently different order; ``null`` is refused where a value
is optional (leave the field out instead); a SKU may appear once per order; the body is at most
64 KiB; the ``Content-Type`` is not checked (``curl -d`` sends a form type by default).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actorbus import Service, ServiceContext
from actorbus.exceptions import StoreConflictError

from ..common.http import HttpError, json_endpoint, json_response, read_json
from ..common.state import app_store
from ..contracts import OrderLine
from .store import (
    Announce,
    IdempotencyConflictError,
    NewOrder,
    OrderView,
    announce_created,
    place_order,
)
from .store import (
    get_order as load_order,
)

__all__ = (
    "ANONYMOUS",
    "MAX_LINES",
    "MAX_QTY",
    "OrderRequest",
    "add_order_routes",
    "parse_order",
)

#: The largest quantity of one line; more is refused as absurd.
MAX_QTY: Final = 10_000
#: The most lines one order may have.
MAX_LINES: Final = 100
#: The customer id of an order placed without one.
ANONYMOUS: Final = "anonymous"

_IDEMPOTENCY_KEY_MAX: Final = 255

Sku = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Qty = Annotated[int, msgspec.Meta(ge=1, le=MAX_QTY)]
CustomerId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class LineRequest(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """One line of ``{"items": [...]}``."""

    sku: Sku
    qty: Qty


class OrderRequest(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """The body of ``POST /orders``: ``{"sku", "qty"}`` or ``{"items": [...]}``, ``customerId``?"""

    sku: Sku | msgspec.UnsetType = msgspec.UNSET
    qty: Qty | msgspec.UnsetType = msgspec.UNSET
    items: (
        Annotated[list[LineRequest], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    customer_id: CustomerId | msgspec.UnsetType = msgspec.UNSET


def parse_order(request: OrderRequest) -> NewOrder:
    """Check the shape rules msgspec cannot express; return the order to place.

    Raises:
        HttpError: 422 when both or neither of ``sku``/``qty`` and ``items`` are given, when
            ``sku`` comes without ``qty`` (or the reverse), or when a SKU is repeated.
    """
    single = request.sku is not msgspec.UNSET or request.qty is not msgspec.UNSET
    if single and request.items is not msgspec.UNSET:
        raise HttpError(422, "invalid_body", 'give either "sku" and "qty", or "items", not both')
    if request.items is not msgspec.UNSET:
        lines = tuple(OrderLine(line.sku, line.qty) for line in request.items)
        seen: dict[str, int] = {}
        for index, line in enumerate(lines):
            if line.sku in seen:
                raise HttpError(
                    422,
                    "invalid_body",
                    f"SKU {line.sku!r} appears twice (items[{seen[line.sku]}] and "
                    f"items[{index}]); put its whole quantity on one line "
                    f"- at `$.items[{index}].sku`",
                )
            seen[line.sku] = index
    elif request.sku is not msgspec.UNSET and request.qty is not msgspec.UNSET:
        lines = (OrderLine(request.sku, request.qty),)
    elif request.sku is not msgspec.UNSET:
        raise HttpError(422, "invalid_body", "Object missing required field `qty`")
    elif request.qty is not msgspec.UNSET:
        raise HttpError(422, "invalid_body", "Object missing required field `sku`")
    else:
        raise HttpError(
            422,
            "invalid_body",
            'an order needs "sku" and "qty", or "items": [{"sku", "qty"}, ...]',
        )
    customer = ANONYMOUS if request.customer_id is msgspec.UNSET else request.customer_id
    return NewOrder(customer_id=customer, items=lines)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key or len(key) > _IDEMPOTENCY_KEY_MAX or not key.isprintable() or not key.isascii():
        raise HttpError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {_IDEMPOTENCY_KEY_MAX} printable ASCII characters",
        )
    return key


async def _place(
    ctx: ServiceContext, new: NewOrder, key: str | None, announce: Announce
) -> tuple[OrderView, bool]:
    """Write the order and its follow-ups in one transaction; answer once it is committed."""
    try:
        async with ctx.transaction() as tx:
            return await place_order(tx, new, key, announce)
    except StoreConflictError:
        # PostgreSQL: a serialization failure or deadlock with a concurrent writer. Nothing
        # was kept; once more is safe (a retried key now finds the order the other one placed).
        async with ctx.transaction() as tx:
            return await place_order(tx, new, key, announce)


async def _create_order(request: Request, ctx: ServiceContext, announce: Announce) -> Response:
    key = _idempotency_key(request)
    new = parse_order(await read_json(request, OrderRequest))
    try:
        order, created = await _place(ctx, new, key, announce)
    except IdempotencyConflictError as exc:
        raise HttpError(422, "idempotency_key_reused", str(exc)) from None
    log = ctx.log.bind(correlation_id=order.order_id)
    if created:
        log.info(
            "order_accepted",
            customer_id=order.customer_id,
            items=[{"sku": line.sku, "qty": line.qty} for line in order.items],
        )
    else:
        log.info("order_request_replayed", idempotency_key=key)
    headers = {"Location": f"/orders/{order.order_id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return json_response({"orderId": order.order_id, "status": order.status}, 202, headers)


@json_endpoint
async def get_order(request: Request, ctx: ServiceContext) -> Response:
    """``GET /orders/{orderId}``: the order and its status, or ``404``."""
    order_id = request.path_params["order_id"]
    order = await load_order(app_store(ctx), order_id)
    if order is None:
        raise HttpError(404, "order_not_found", f"no order {order_id!r}")
    return json_response(order)


def add_order_routes(service: Service, announce: Announce = announce_created) -> None:
    """Mount ``POST /orders`` and ``GET /orders/{orderId}`` on ``service``.

    Args:
        service: The Order service or the orchestrator.
        announce: What a new order sets going, in its transaction: the ``order.created``
            events by default; the orchestrator starts its saga.
    """

    @json_endpoint
    async def create_order(request: Request, ctx: ServiceContext) -> Response:
        """``POST /orders``: validate, store the order and its follow-ups in one commit, 202."""
        return await _create_order(request, ctx, announce)

    service.route("/orders", methods=["POST"])(create_order)
    service.route("/orders/{order_id}", methods=["GET"])(get_order)
