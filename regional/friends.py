"""Which of a fan's friends bought seats for an event and chose to share: an in-memory index fed
by order events and fans' records from the change feed; never touches the seat-map path.

Orders older than `limits.friends_order_retention_s` (as long as the region's feed keeps them)
are forgotten as new ones arrive, so the index holds what a node started now would read from the
feed, however long this one has run. Fans' records are kept: one per fan.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from tessera import contracts, limits


class FriendsIndex:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        retention_s: float = limits.friends_order_retention_s,
    ) -> None:
        self.users: dict[str, contracts.UserRecord] = {}
        self.purchases: defaultdict[uuid.UUID, dict[str, list[str]]] = defaultdict(dict)
        # The orders in the index, in arrival order (commit order, near enough): a duplicate is
        # recognised, and the oldest are forgotten first.
        self.orders: dict[uuid.UUID, contracts.OrderEvent] = {}
        self.retention = timedelta(seconds=retention_s)
        self.pruned = (
            None
            if registry is None
            else Counter(
                "tessera_rows_pruned",
                "Entries forgotten by the read node's pruning, by index.",
                ("table",),
                registry=registry,
            ).labels(table="friends_orders")
        )

    def set_user(self, record: contracts.UserRecord) -> None:
        self.users[record.user_id] = record

    def add_order(self, order: contracts.OrderEvent, now: datetime | None = None) -> None:
        if order.order_id in self.orders:
            return
        self.orders[order.order_id] = order
        seats = self.purchases[order.event_id].setdefault(order.user_id, [])
        seats.extend(order.seats)
        if order.user_id not in self.users:
            # Until the fan's record arrives, the order's own flag is the best knowledge.
            self.users[order.user_id] = contracts.UserRecord(
                user_id=order.user_id, share_purchases=order.share_purchases, friends=[]
            )
        # After the order is in: an order already past retention goes with its seats.
        self.prune(now or datetime.now(UTC))

    def prune(self, now: datetime) -> int:
        """Forget up to `limits.friends_prune_orders_max` of the oldest orders past retention;
        the number forgotten."""
        horizon = now - self.retention
        forgotten = 0
        while forgotten < limits.friends_prune_orders_max and self.orders:
            oldest = next(iter(self.orders.values()))
            if oldest.created_at > horizon:
                break
            del self.orders[oldest.order_id]
            self.forget(oldest)
            forgotten += 1
        if forgotten and self.pruned is not None:
            self.pruned.inc(forgotten)
        return forgotten

    def forget(self, order: contracts.OrderEvent) -> None:
        bought = self.purchases.get(order.event_id)
        seats = None if bought is None else bought.get(order.user_id)
        if bought is None or seats is None:
            return
        for seat in order.seats:
            with contextlib.suppress(ValueError):
                seats.remove(seat)
        if not seats:
            del bought[order.user_id]
        if not bought:
            del self.purchases[order.event_id]

    def friends_at(self, event_id: uuid.UUID, user_id: str) -> list[dict[str, object]]:
        """Friends are mutual: each must list the other; only those sharing are shown."""
        me = self.users.get(user_id)
        if me is None:
            return []
        bought = self.purchases.get(event_id, {})
        found: list[dict[str, object]] = []
        for friend_id in me.friends:
            friend = self.users.get(friend_id)
            if friend is None or not friend.share_purchases or user_id not in friend.friends:
                continue
            seats = bought.get(friend_id)
            if seats:
                found.append({"user_id": friend_id, "seats": sorted(seats)})
        return found
