"""Which of a fan's friends bought seats for an event and chose to share: an in-memory index fed
by order events and fans' records from the change feed; never touches the seat-map path."""

from __future__ import annotations

import uuid
from collections import defaultdict

from tessera import contracts


class FriendsIndex:
    def __init__(self) -> None:
        self.users: dict[str, contracts.UserRecord] = {}
        self.purchases: defaultdict[uuid.UUID, dict[str, list[str]]] = defaultdict(dict)
        self.orders_seen: set[uuid.UUID] = set()

    def set_user(self, record: contracts.UserRecord) -> None:
        self.users[record.user_id] = record

    def add_order(self, order: contracts.OrderEvent) -> None:
        if order.order_id in self.orders_seen:
            return
        self.orders_seen.add(order.order_id)
        seats = self.purchases[order.event_id].setdefault(order.user_id, [])
        seats.extend(order.seats)
        if order.user_id not in self.users:
            # Until the fan's record arrives, the order's own flag is the best knowledge.
            self.users[order.user_id] = contracts.UserRecord(
                user_id=order.user_id, share_purchases=order.share_purchases, friends=[]
            )

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
