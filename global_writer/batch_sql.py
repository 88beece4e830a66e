"""The statements of a group commit, one per kind of change, each for the whole batch.

Each statement has a fixed shape whatever the batch's size: rows travel as arrays unnested by the
server, and one statement writes several tables through data-modifying CTEs, so a batch of any
size costs at most seven round trips (releases, extensions, holds, sales, the version bump with
its fencing check, the outbox, the idempotency records). The statements that add or remove claims
also keep each fan's count of seats (`fan_seats`), whose CHECK holds the per-fan limit.
SQLAlchemy compiles each once, and the driver prepares each once per connection. Written as SQL
text because SQLAlchemy does not cache its PostgreSQL `insert(…).on_conflict_…()` constructs.
Everything here is SQL that both PostgreSQL and CockroachDB accept: no table is written twice by
one statement (CockroachDB refuses that).

Who wins a seat is decided by `seat_claims`' primary key: a claim that conflicts is not inserted.

Every statement that joins its arrays to a table also names the keys it touches with `= ANY(…)`:
a plan that reads the table by its index, whatever the planner believes the table's size to be.
Found under the onsale bench: on a database that started empty the statistics said "two rows",
and the planner scanned whole tables (every idempotency key, every active hold) in each batch.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

UUID: Final = pg.UUID(as_uuid=True)


def _array(name: str, item: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=pg.ARRAY(item))


# Releases and expiries alike. A fan's release names its user (a hold of someone else is not
# touched); an expiry releases only a hold whose deadline has passed by the database's clock. The
# freed seats leave their fans' counts (`fan_seats`) in the same statement.
RELEASE_HOLDS: Final = sa.text(
    "WITH wanted AS ("
    " SELECT * FROM unnest(:hold_ids, :reasons, :user_ids) AS w (hold_id, reason, user_id)"
    "), ended AS ("
    " UPDATE holds SET status = wanted.reason, ended_at = now() FROM wanted"
    " WHERE holds.hold_id = wanted.hold_id AND holds.hold_id = ANY(:hold_ids)"
    " AND holds.event_id = :event_id AND holds.status = 'active'"
    " AND (wanted.reason = 'released' OR holds.expires_at <= now())"
    " AND (wanted.user_id = '' OR holds.user_id = wanted.user_id)"
    " RETURNING holds.hold_id"
    "), freed AS ("
    " DELETE FROM seat_claims USING ended WHERE seat_claims.hold_id = ended.hold_id"
    " AND seat_claims.hold_id = ANY(:hold_ids)"
    " RETURNING seat_claims.hold_id, seat_claims.section_id, seat_claims.seat_index,"
    " seat_claims.user_id"
    "), uncounted AS ("
    " UPDATE fan_seats SET seats = fan_seats.seats - f.seats"
    " FROM (SELECT user_id, count(*) AS seats FROM freed GROUP BY user_id) AS f"
    " WHERE fan_seats.event_id = :event_id AND fan_seats.user_id = f.user_id"
    ")"
    " SELECT hold_id, section_id, seat_index, user_id FROM freed"
).bindparams(
    sa.bindparam("event_id", type_=UUID),
    _array("hold_ids", UUID),
    _array("reasons", sa.Text),
    _array("user_ids", sa.Text),
)

# A hold is extended once, while it is active and before its deadline.
EXTEND_HOLDS: Final = sa.text(
    "UPDATE holds SET expires_at = holds.expires_at + e.seconds * interval '1 second',"
    " extended = true"
    " FROM unnest(:hold_ids, :user_ids, :seconds) AS e (hold_id, user_id, seconds)"
    " WHERE holds.hold_id = e.hold_id AND holds.hold_id = ANY(:hold_ids)"
    " AND holds.user_id = e.user_id"
    " AND holds.status = 'active' AND NOT holds.extended AND holds.expires_at > now()"
    " RETURNING holds.hold_id, holds.expires_at"
).bindparams(_array("hold_ids", UUID), _array("user_ids", sa.Text), _array("seconds", sa.Integer))

# The hold rows (expiring at the database's `now()` plus the event's TTL: the one place a hold's
# deadline is computed), their seats' claims, and their fans' counts. The per-fan limit is held
# here (docs/adr/0005): a hold is written only if its fan's count (`fan_seats`), plus the seats of
# the fan's holds before it in the batch, plus its own, stays within the event's limit; a hold
# refused comes back once with `within` false, the seats its fan already had and the limit. The
# count is kept by the seats actually won, and `fan_seats`' CHECK refuses any count over the
# limit, whatever wrote it. Every hold written comes back once per seat it won, or once with no
# seat if it won none.
HOLD_SEATS: Final = sa.text(
    "WITH asked AS ("
    " SELECT h.hold_id, h.user_id, h.seat_count, h.seats,"
    " sum(h.seat_count) OVER (PARTITION BY h.user_id ORDER BY h.n) AS running"
    " FROM unnest(:hold_ids, :hold_users, :seat_counts, :seat_lists) WITH ORDINALITY"
    " AS h (hold_id, user_id, seat_count, seats, n)"
    "), allowed AS ("
    " SELECT asked.*, events.per_user_limit AS seat_limit,"
    " coalesce(fan_seats.seats, 0) + asked.running - asked.seat_count AS had,"
    " coalesce(fan_seats.seats, 0) + asked.running <= events.per_user_limit AS within"
    " FROM asked JOIN events ON events.event_id = :event_id"
    " LEFT JOIN fan_seats ON fan_seats.event_id = :event_id"
    " AND fan_seats.user_id = asked.user_id AND fan_seats.user_id = ANY(:hold_users)"
    "), new_holds AS ("
    " INSERT INTO holds (hold_id, event_id, user_id, status, seat_count, seats, expires_at)"
    " SELECT hold_id, :event_id, user_id, 'active', seat_count,"
    " string_to_array(seats, ' '), now() + :ttl_s * interval '1 second'"
    " FROM allowed WHERE within"
    " RETURNING hold_id, expires_at"
    "), won AS ("
    " INSERT INTO seat_claims (event_id, section_id, seat_index, hold_id, user_id, state)"
    " SELECT :event_id, c.section_id, c.seat_index, c.hold_id, allowed.user_id, 'held'"
    " FROM unnest(:section_ids, :seat_indexes, :claim_holds, :claim_users)"
    " AS c (section_id, seat_index, hold_id, user_id)"
    " JOIN allowed ON allowed.hold_id = c.hold_id AND allowed.within"
    " ON CONFLICT DO NOTHING"
    " RETURNING hold_id, section_id, seat_index, user_id"
    "), counted AS ("
    " INSERT INTO fan_seats (event_id, user_id, seats, seat_limit)"
    " SELECT :event_id, won.user_id, count(*), min(allowed.seat_limit)"
    " FROM won JOIN allowed ON allowed.hold_id = won.hold_id GROUP BY won.user_id"
    " ON CONFLICT (event_id, user_id) DO UPDATE SET seats = fan_seats.seats + excluded.seats"
    ")"
    " SELECT allowed.hold_id, allowed.within, allowed.had, allowed.seat_limit,"
    " new_holds.expires_at,"
    " won.section_id, won.seat_index"
    " FROM allowed LEFT JOIN new_holds ON new_holds.hold_id = allowed.hold_id"
    " LEFT JOIN won ON won.hold_id = allowed.hold_id"
).bindparams(
    sa.bindparam("event_id", type_=UUID),
    sa.bindparam("ttl_s", type_=sa.Integer),
    _array("hold_ids", UUID),
    _array("hold_users", sa.Text),
    _array("seat_counts", sa.Integer),
    _array("seat_lists", sa.Text),
    _array("section_ids", sa.Text),
    _array("seat_indexes", sa.Integer),
    _array("claim_holds", UUID),
    _array("claim_users", sa.Text),
)

# Only when the engine was wrong about a seat (another writer took it): the losing holds go, and
# their fans' counts with them.
DROP_LOST_CLAIMS: Final = sa.text(
    "WITH dropped AS ("
    " DELETE FROM seat_claims WHERE hold_id = ANY(:hold_ids) RETURNING event_id, user_id"
    ")"
    " UPDATE fan_seats SET seats = fan_seats.seats - d.seats"
    " FROM (SELECT event_id, user_id, count(*) AS seats FROM dropped GROUP BY event_id, user_id)"
    " AS d WHERE fan_seats.event_id = d.event_id AND fan_seats.user_id = d.user_id"
).bindparams(_array("hold_ids", UUID))
DROP_LOST_HOLDS: Final = sa.text("DELETE FROM holds WHERE hold_id = ANY(:hold_ids)").bindparams(
    _array("hold_ids", UUID)
)

# Checkouts: each hold still active and before its deadline becomes a confirmed order with its
# payment `authorized` (the settler captures it after the answer); every other checkout's
# authorization is recorded `void_pending` (the settler voids it), so none is ever forgotten.
# A checkout sells only while its request's attempt still holds its Idempotency-Key in flight
# (`claimed`, locked until commit): a retry that took the key over (global_writer/idempotency.py)
# has fenced it, and a takeover or `fence` that comes later waits for this transaction and then
# finds the key done. Returns the orders made, with what their messages say about the buyer.
SELL_HOLDS: Final = sa.text(
    "WITH sale AS ("
    " SELECT * FROM unnest(:hold_ids, :user_ids, :order_ids, :payment_ids, :amounts,"
    " :currencies, :providers, :refs, :idem_keys, :attempts)"
    " AS s (hold_id, user_id, order_id, payment_id, amount, currency, provider, ref, idem_key,"
    " attempt)"
    "), claimed AS ("
    " SELECT sale.hold_id FROM sale JOIN idempotency_keys k ON k.user_id = sale.user_id"
    " AND k.key = sale.idem_key AND k.attempt = sale.attempt AND k.status = 'in_flight'"
    " WHERE k.user_id = ANY(:user_ids)"
    " FOR UPDATE OF k"
    "), bought AS ("
    " UPDATE holds SET status = 'purchased', ended_at = now() FROM sale"
    " WHERE holds.hold_id = sale.hold_id AND holds.hold_id = ANY(:hold_ids)"
    " AND holds.user_id = sale.user_id"
    " AND holds.status = 'active' AND holds.expires_at > now()"
    " AND (sale.attempt IS NULL OR sale.hold_id IN (SELECT hold_id FROM claimed))"
    " RETURNING holds.hold_id, holds.seats, sale.order_id, sale.user_id, sale.amount,"
    " sale.currency"
    "), sold AS ("
    " UPDATE seat_claims SET state = 'sold', order_id = bought.order_id FROM bought"
    " WHERE seat_claims.hold_id = bought.hold_id AND seat_claims.hold_id = ANY(:hold_ids)"
    "), new_orders AS ("
    " INSERT INTO orders (order_id, event_id, user_id, hold_id, seats, amount_minor, currency,"
    " status)"
    " SELECT order_id, :event_id, user_id, hold_id, seats, amount, currency, 'confirmed'"
    " FROM bought"
    "), new_payments AS ("
    " INSERT INTO payments (payment_id, hold_id, order_id, user_id, provider, provider_ref,"
    " amount_minor, currency, status)"
    " SELECT sale.payment_id, sale.hold_id, bought.order_id, sale.user_id, sale.provider,"
    " sale.ref, sale.amount, sale.currency,"
    " CASE WHEN bought.hold_id IS NULL THEN 'void_pending' ELSE 'authorized' END"
    " FROM sale LEFT JOIN bought ON bought.hold_id = sale.hold_id"
    # Each order's tickets, signed before the batch (global_writer/tickets.py): written only
    # with their order, and only for its own seats; the count comes back to be checked.
    "), new_tickets AS ("
    " INSERT INTO tickets (ticket_id, order_id, event_id, user_id, seat, kid, token, status,"
    " issued_at)"
    " SELECT tk.ticket_id, bought.order_id, :event_id, bought.user_id, tk.seat, tk.kid,"
    " tk.token, 'valid', tk.issued_at"
    " FROM unnest(:ticket_ids, :ticket_holds, :ticket_seats, :ticket_kids, :ticket_tokens,"
    " :ticket_issued) AS tk (ticket_id, hold_id, seat, kid, token, issued_at)"
    " JOIN bought ON bought.hold_id = tk.hold_id AND tk.seat = ANY(bought.seats)"
    " RETURNING order_id"
    ")"
    # Data-modifying CTEs run whether or not the query reads them.
    " SELECT bought.hold_id, users.share_purchases, users.email, users.phone,"
    " coalesce(issued.tickets, 0)"
    " FROM bought LEFT JOIN users ON users.user_id = bought.user_id"
    " LEFT JOIN (SELECT order_id, count(*) AS tickets FROM new_tickets GROUP BY order_id)"
    " AS issued ON issued.order_id = bought.order_id"
).bindparams(
    sa.bindparam("event_id", type_=UUID),
    _array("hold_ids", UUID),
    _array("user_ids", sa.Text),
    _array("order_ids", UUID),
    _array("payment_ids", UUID),
    _array("amounts", sa.BigInteger),
    _array("currencies", sa.Text),
    _array("providers", sa.Text),
    _array("refs", sa.Text),
    _array("idem_keys", sa.Text),
    _array("attempts", UUID),
    _array("ticket_ids", UUID),
    _array("ticket_holds", UUID),
    _array("ticket_seats", sa.Text),
    _array("ticket_kids", sa.Text),
    _array("ticket_tokens", sa.Text),
    _array("ticket_issued", sa.DateTime(timezone=True)),
)

# Refunds (global_writer/refunds.py): each confirmed order becomes `refunded`, its hold
# `refunded`, its seats' claims are deleted (back on sale) and leave their fan's count, and its
# payment goes back to the settler: a captured one to `refund_pending` (the provider refunds it
# under the key `refund-{payment_id}`), one not captured yet to `void_pending` (voided, or
# refunded if the capture won the race: the saga's own path). The tickets are marked by
# `tickets.mark_orders` in the same transaction. Returns each order refunded (with its fan and
# seats), once per seat freed.
REFUND_ORDERS: Final = sa.text(
    "WITH refunded AS ("
    " UPDATE orders SET status = 'refunded', refunded_at = now()"
    " FROM unnest(:order_ids, :hold_ids) AS r (order_id, hold_id)"
    " WHERE orders.order_id = r.order_id AND orders.order_id = ANY(:order_ids)"
    " AND orders.hold_id = r.hold_id AND orders.event_id = :event_id"
    " AND orders.status = 'confirmed'"
    " RETURNING orders.order_id, orders.hold_id, orders.user_id, orders.seats"
    "), ended AS ("
    " UPDATE holds SET status = 'refunded' FROM refunded"
    " WHERE holds.hold_id = refunded.hold_id AND holds.hold_id = ANY(:hold_ids)"
    " AND holds.status = 'purchased'"
    "), freed AS ("
    " DELETE FROM seat_claims USING refunded WHERE seat_claims.hold_id = refunded.hold_id"
    " AND seat_claims.hold_id = ANY(:hold_ids) AND seat_claims.state = 'sold'"
    " RETURNING seat_claims.hold_id, seat_claims.section_id, seat_claims.seat_index,"
    " seat_claims.user_id"
    "), uncounted AS ("
    " UPDATE fan_seats SET seats = fan_seats.seats - f.seats"
    " FROM (SELECT user_id, count(*) AS seats FROM freed GROUP BY user_id) AS f"
    " WHERE fan_seats.event_id = :event_id AND fan_seats.user_id = f.user_id"
    "), repaid AS ("
    " UPDATE payments SET status = CASE payments.status WHEN 'captured' THEN 'refund_pending'"
    " ELSE 'void_pending' END, next_attempt_at = now(), updated_at = now()"
    " FROM refunded WHERE payments.order_id = refunded.order_id"
    " AND payments.order_id = ANY(:order_ids) AND payments.status IN ('captured', 'authorized')"
    ")"
    " SELECT refunded.order_id, freed.section_id, freed.seat_index, freed.user_id,"
    " refunded.user_id, refunded.seats"
    " FROM refunded LEFT JOIN freed ON freed.hold_id = refunded.hold_id"
).bindparams(
    sa.bindparam("event_id", type_=UUID),
    _array("order_ids", UUID),
    _array("hold_ids", UUID),
)

# The fencing check: versions move only while this writer's lease (owner and epoch) is current.
# `now()` is the transaction's timestamp, the one the holds' deadlines were computed from;
# clock_timestamp() is when the bump ran, at the end of the batch: the change feed's commit time.
BUMP_VERSIONS: Final = sa.text(
    "UPDATE sections SET version = version + 1"
    " WHERE event_id = :event_id AND section_id = ANY(:section_ids)"
    " AND EXISTS (SELECT 1 FROM event_leases WHERE event_leases.event_id = :event_id"
    " AND event_leases.owner = :owner AND event_leases.epoch = :epoch)"
    " RETURNING section_id, version, now(), clock_timestamp()"
).bindparams(
    sa.bindparam("event_id", type_=UUID),
    _array("section_ids", sa.Text),
    sa.bindparam("epoch", type_=sa.BigInteger),
)
LEASE_IS_CURRENT: Final = sa.text(
    "SELECT 1 FROM event_leases WHERE event_id = :event_id AND owner = :owner AND epoch = :epoch"
).bindparams(sa.bindparam("event_id", type_=UUID), sa.bindparam("epoch", type_=sa.BigInteger))
