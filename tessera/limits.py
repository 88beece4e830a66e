"""Every bound of the Python side of Tessera, in one place. Units come last in each name.

Bounds that the Rust engine enforces too are mirrored from `core_rs/src/limits.rs`; a test keeps
the two in step.
"""

from typing import Final

# --- seat engine (mirrors core_rs/src/limits.rs) ---
section_seats_max: Final = 65_536
section_rows_max: Final = 4_096
row_seats_max: Final = 4_096
event_sections_max: Final = 4_096
best_available_seats_max: Final = 256
seatmap_bytes_max: Final = 4 * 1024 * 1024
wheel_capacity_max: Final = 16_777_216
wheel_hold_id_bytes_max: Final = 128
# Deadlines may lie this far after the wheel's clock (six levels of 64 one-millisecond slots).
wheel_horizon_ms: Final = 2**36

# --- venue file (Python only: the engine sees seat indices, never venue documents) ---
# Real venues (<=150k seats) with explicit labels stay under 2 MiB; caps an upload's decode memory.
venue_file_bytes_max: Final = 8 * 1024 * 1024
# Section/row/tier ids and seat labels: real ones ("FLOOR-A", "AAA", "1201") are far shorter.
venue_id_chars_max: Final = 32
# A public seat id is "<section>:<row>:<seat>": three ids and two separators.
seat_id_chars_max: Final = 3 * venue_id_chars_max + 2
# Venue, section and price tier names are shown to fans; longer ones are data-entry errors.
venue_name_chars_max: Final = 128
# Price tiers in one venue; real price charts use a few dozen at most.
venue_price_tiers_max: Final = 256
# Seats in one venue = core_rs EVENT_SEATS_MAX, since one event seat map covers the whole venue.
venue_seats_max: Final = 4_194_304
# Row rank (lower = better) is only compared, never summed; this fits INT4 in the database.
row_rank_max: Final = 2**31 - 1
# Any ticket even in tiny-unit currencies (IDR, VND); 256-seat order totals stay far inside int64.
price_minor_max: Final = 10**12

# --- global writer: requests ---
# A fan buys for a household, not a block; 10,000-seat holds are abuse, rejected with 422.
seats_per_hold_max: Final = 10
# Holds: the event's TTL is chosen by the organiser within this range.
hold_ttl_s_min: Final = 1
hold_ttl_s_max: Final = 3_600
# One extension per hold, by at most this much: enough to finish a slow checkout.
hold_extension_s_max: Final = 600
per_user_limit_max: Final = 1_000
# Request bodies: the largest is an admin event with a venue document inside.
request_body_bytes_max: Final = 8 * 1024 * 1024
# Fan requests (holds, orders) are tiny; a bigger body is malformed or hostile.
fan_request_body_bytes_max: Final = 16 * 1024
# Idempotency-Key: a client-chosen token (UUIDs are 36 characters).
idempotency_key_chars_max: Final = 128
# Keys are kept this long, as the IETF draft suggests.
idempotency_key_ttl_s: Final = 24 * 3_600
# An in-flight key older than this belongs to a request that died; its effect never committed
# (the effect and the key's completion share one transaction), so the key may be reused.
idempotency_in_flight_s_max: Final = 30
# GET /v1/me/orders (global_writer/refunds.py): orders per page at most, and the longest cursor
# accepted (the one the API gives is about 90 characters).
orders_page_size_max: Final = 100
orders_cursor_chars_max: Final = 256
# How long after buying an event may let fans cancel their own orders (30 days at most), and
# how many orders one step of an event's cancellation refunds (one statement per step).
fan_cancel_window_s_max: Final = 30 * 24 * 3_600
refund_batch_orders_max: Final = 500
# `tessera report` waits this long for an event's sales report (one read of its claims).
report_request_timeout_s: Final = 120.0

# --- global writer: group commit ---
# Requests arriving within this window go into one transaction (docs/architecture.md §3: 1-5 ms).
batch_window_ms: Final = 2
# Requests per transaction: bounds statement size and the latency of the batch's last request.
batch_requests_max: Final = 256
# Waiting operations per event; past it, writers answer 503 rather than queue without bound.
actor_queue_ops_max: Final = 10_000
# A fan's request that would wait longer than this to be committed (the batch committing now,
# then the queue ahead at the recent pace) is refused at once with 503 and Retry-After: accepted
# work then finishes well inside any hold's TTL, and the rest retries instead of piling up.
actor_queue_wait_s_max: Final = 1.0
# Weight of the newest batch in the actor's smoothed batch time (global_writer/actor.py Pace).
actor_pace_newest_share: Final = 0.2
# The longest Retry-After a refusal under load asks for: fans come back within a few seconds.
overload_retry_after_s_max: Final = 5.0
# A request still queued after this long is dropped, never run, and answered 503. One whose
# batch is already committing waits for the outcome instead (freeing its key early could let a
# retry and the batch both act).
actor_reply_timeout_s: Final = 10.0
# Idempotency keys claimed by one statement (many concurrent requests' keys at once), and how
# many such statements may run at once; requests arriving meanwhile wait for the next one.
idempotency_claim_batch_keys_max: Final = 512
idempotency_claim_statements_max: Final = 2
# Verified fan tokens remembered per writer process (each still checked for expiry on use), so a
# fan's requests cost one HMAC check per token rather than one per request.
verified_tokens_max: Final = 65_536

# --- global writer: expiry, outbox, snapshots ---
# How often the reaper wakes when nothing is due sooner: holds are released within ~1 s.
reaper_tick_s: Final = 0.2
# Expired holds released per reaper transaction.
reaper_batch_holds_max: Final = 512
# The relay republishes outbox rows older than this that the live publisher did not mark sent.
relay_age_s_min: Final = 1.0
relay_interval_s: Final = 1.0
relay_batch_rows_max: Final = 1_000
# Committed-but-unpublished messages queued for the live publisher.
publish_queue_messages_max: Final = 100_000
# A section snapshot goes to the KV bucket every this many versions, or this often if changed.
snapshot_gap_versions_max: Final = 50
snapshot_interval_s: Final = 5.0
# Section leases: renewed well before they lapse.
lease_ttl_s: Final = 30
lease_renew_s: Final = 10
# Redis calls on the request path give up quickly: Redis is a mirror, never the decider.
redis_timeout_s: Final = 0.25
# Pruning (global_writer/pruning.py): what only grows (expired idempotency keys, published outbox
# rows) is deleted this often, in statements of at most this many rows (each a short transaction
# of its own, so no lock is held long and no batch waits behind a big delete), with a pause
# between them, and at most this many statements per table per round: a backlog drains over
# several rounds instead of loading the database at once.
prune_interval_s: Final = 60.0
prune_batch_rows_max: Final = 1_000
prune_batch_pause_s: Final = 0.05
prune_batches_per_round_max: Final = 100
# Published outbox rows are kept this long after publishing (what went out when, for an
# operator); the stream deduplicates by message id, so nothing reads them back.
outbox_published_retention_s: Final = 3_600

# --- auth: fan JWTs and the admin key (tessera/auth.py) ---
# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
jwt_secret_bytes_min: Final = 32
# Our tokens are ~200 chars; anything far longer is garbage, refused before base64 and HMAC work.
bearer_token_chars_max: Final = 2048
# User ids are opaque ids from the identity system; 64 chars covers UUIDs and provider subs.
user_id_chars_max: Final = 64
# A fan session spans one onsale; an hour means a leaked token is useless by the next one.
jwt_default_ttl_s: Final = 3600
# Dev and test tokens never live longer than a day; verify refuses longer-lived tokens too.
jwt_ttl_s_max: Final = 86_400
# Minting and verifying hosts' clocks may disagree by this much before `iat` looks future.
jwt_clock_skew_s: Final = 30
# The most clock leeway an operator may configure for an identity provider's tokens.
jwt_leeway_s_max: Final = 300
# The identity provider's keys (JWKS, tessera/identity.py): refreshed this often, at most this
# often when a token names an unknown key (a rotation), each fetch bounded.
jwks_refresh_s: Final = 300.0
jwks_refresh_s_min: Final = 10.0
jwks_fetch_s_max: Final = 5
# The local identity provider (tessera_ops/identity_provider.py) publishes the current key and
# this many before it, so tokens signed just before a rotation still verify.
idp_keys_max: Final = 4
# Its token request is one small JSON object (a user id and a ttl): anything larger is refused.
idp_token_request_bytes_max: Final = 1_024
# NumericDate claims past 2242 are garbage; also keeps iat + ttl far inside int64 and JSON.
jwt_timestamp_s_max: Final = 2**33

# --- payments (global_writer/payments.py) ---
# Any order at the top ticket price, even of 256 seats (the engine's best-available cap): 2.56e14
# minor units stay far inside int64.
payment_amount_minor_max: Final = price_minor_max * best_available_seats_max
# Stripe and Braintree tokens are < 100 chars; encrypted-card blobs (Adyen CSE) reach ~2 KiB.
payment_token_chars_max: Final = 4096
# Stripe's cap on idempotency keys: room for the writer's user id + ":" + Idempotency-Key.
payment_idempotency_key_chars_max: Final = 255
# Providers' authorization ids (Stripe's `pi_…` are ~27 chars); stored with each order.
payment_authorization_id_chars_max: Final = 255
# A provider's name (`sandbox`, `stripe`) is a label in orders and metrics, not prose.
payment_provider_name_chars_max: Final = 32
# The sandbox's `tok_slow` answers after this delay: long enough to overlap requests in tests.
payment_sandbox_slow_delay_s: Final = 2.0
# Idempotency records the sandbox keeps per process: a 70k-seat onsale with retries fits (~100 MB).
payment_sandbox_attempts_max: Final = 200_000
# One provider call, connect to last byte: a card authorization answers in 1-2 s; with the retry
# and its back-off the worst case (~9 s) still ends before the edge (12 s) and the settler (10 s).
payment_provider_timeout_s: Final = 4.0
# A healthy provider accepts a connection in milliseconds; past this, retrying beats waiting.
payment_provider_connect_timeout_s: Final = 2.0
# The SDK's own retries of a call that failed on the network, 409 or 5xx (same idempotency key).
payment_provider_network_retries_max: Final = 1
# Stripe's largest list page: the fewest round trips for a reconcile scan.
payment_stripe_list_page_items_max: Final = 100
# Pages one list scan reads before it refuses: 200k PaymentIntents, a week of a large onsale.
payment_stripe_list_pages_max: Final = 2_000
# Stripe cancels an uncaptured card PaymentIntent after 7 days: older ones cannot still be open.
payment_stripe_authorization_lifetime_s: Final = 7 * 86_400
# A webhook signed longer ago than this is refused as a replay (Stripe's SDK default too).
payment_webhook_tolerance_s: Final = 300
# Stripe's own cap on a webhook body is far below this; a bigger one is not from Stripe.
payment_webhook_body_bytes_max: Final = 1024 * 1024

# --- checkout (global_writer/checkout.py) ---
# After a checkout's batch failed, its attempt is fenced and its authorization voided unless the
# database shows the batch committed it after all; while the database cannot be reached, tried
# again after this pause, this many times (then `tessera payments reconcile` finds it).
checkout_void_check_interval_s: Final = 5.0
checkout_void_checks_max: Final = 12

# --- payment settlement (global_writer/settle.py) ---
# Payments one settler pass reads and records (one statement each way).
settle_batch_payments_max: Final = 256
# How often the settler looks for retries that fell due when no commit woke it.
settle_interval_s: Final = 1.0
# Provider calls in flight at once: a provider rate-limits bursts (Stripe: ~100 requests/s).
settle_provider_calls_max: Final = 32
# One capture, void or refund call gives up after this long (and is retried).
settle_provider_call_s_max: Final = 10.0
# Retries of an unreachable provider back off from seconds to a few minutes, never give up.
settle_backoff_s_min: Final = 1.0
settle_backoff_s_max: Final = 300.0

# --- reconciliation (global_writer/reconcile.py, `tessera payments reconcile`) ---
# Authorizations at the provider younger than this are left alone by default: a checkout may be
# between its authorization and its batch (authorize <= 8.5 s, the queue <= 1 s, the reply
# timeout 10 s). Fencing makes any age safe; the grace only spares checkouts still running.
reconcile_older_than_s: Final = 300.0
# The least grace a caller may ask for, and the most (Stripe cancels after 7 days anyway).
reconcile_older_than_s_min: Final = 60.0
reconcile_older_than_s_max: Final = 7 * 86_400.0
# The command waits this long for the writer's answer (a long Stripe scan reads many pages).
reconcile_request_timeout_s: Final = 900.0
# The writer's own scheduled reconcile (global_writer/reconcile.py `AutoReconciler`): every this
# often (TESSERA_RECONCILE_INTERVAL_S, within the bounds), one writer (a lease in Redis) scans
# the provider; each Stripe scan pages through a week of PaymentIntents, so not too often.
reconcile_auto_interval_s: Final = 300.0
reconcile_auto_interval_s_min: Final = 1.0
reconcile_auto_interval_s_max: Final = 86_400.0
# Its grace (TESSERA_RECONCILE_OLDER_THAN_S). The least is the in-flight bound of a key: an
# attempt older than that is one the writer already treats as dead (a retry may take it over).
reconcile_auto_older_than_s: Final = reconcile_older_than_s
reconcile_auto_older_than_s_min: Final = float(idempotency_in_flight_s_max)
# Open authorizations acted on per scheduled round, oldest first; the rest wait for the next.
reconcile_auto_items_max: Final = 200

# --- observability: structured logs (tessera/observability.py) ---
# A client's X-Request-Id longer than this (or with other characters) is replaced by our own.
request_id_chars_max: Final = 128
# Access-log lines are written in bursts (tessera/requests.py): at most this many waiting, and
# at most this long (a write per request would cost a busy edge a syscall per cache hit).
access_log_lines_buffered_max: Final = 256
access_log_flush_s: Final = 0.2
# A string field longer than this is cut, so one bad value cannot flood the log pipeline.
log_field_chars_max: Final = 4096
# Nesting deeper than this in a log field is summarised; also stops self-referencing structures.
log_field_depth_max: Final = 8
# Items logged from one list or mapping; the rest are counted, not written.
log_field_items_max: Final = 256

# --- test and local servers (tessera_ops/servers.py) ---
# initdb + start take ~2 s on 2 cores; slow CI disks get ample headroom before a clear error.
server_start_timeout_s: Final = 30.0
# initdb writes ~40 MB of catalog files; taking longer means a broken disk or binary.
postgres_initdb_timeout_s: Final = 60.0
# A server asked to stop gets this long to exit cleanly before it is SIGKILLed.
server_stop_timeout_s: Final = 10.0
# Readiness is polled this often: adds little to startup and costs little CPU on 2 cores.
server_poll_interval_s: Final = 0.02
# One readiness probe (TCP connect, PING, HTTP /healthz) gives up after this long.
server_probe_timeout_s: Final = 1.0
# A ServerStartError quotes this much of the end of the server's log: enough for the cause.
server_log_tail_bytes: Final = 4 * 1024
# Tests drive 500 concurrent clients through pools; the local PostgreSQL admits this many.
postgres_connections_max: Final = 300
# PostgreSQL truncates identifiers past 63 bytes (NAMEDATALEN - 1): longer names would collide.
database_name_chars_max: Final = 63
# Admin connections (create / drop database) fail fast when the server is unreachable.
postgres_connect_timeout_s: Final = 10
# Local Valkey holds hold mirrors, rate limits, queues (megabytes); past it: errors, no eviction.
valkey_memory_bytes: Final = 512 * 1024 * 1024
# Local JetStream file store: test streams hold megabytes; caps the disk a runaway test can fill.
nats_file_store_bytes: Final = 1024 * 1024 * 1024
# Local JetStream memory store: nothing of ours uses memory storage; a small cap catches mistakes.
nats_memory_store_bytes: Final = 256 * 1024 * 1024
# The NATS account and user names of tessera/resources/nats/server/permissions.json: short ids.
nats_identifier_chars_max: Final = 64

# --- JetStream definitions (tessera/resources/nats/jetstream/*.json, tessera/jetstream.py) ---
# A definition file is a few hundred bytes; anything far bigger is not a definition.
jetstream_definition_file_bytes_max: Final = 64 * 1024
# Stream and bucket names are short ids (SEATS, seatmap); NATS's own limit is looser.
jetstream_name_chars_max: Final = 32
# Subjects per stream: ours bind two patterns; dozens would mean a design mistake.
jetstream_subjects_max: Final = 16
# One subject pattern: a few tokens of ids; NATS accepts far longer, we never need them.
jetstream_subject_chars_max: Final = 256
# Descriptions are one sentence for operators.
jetstream_description_chars_max: Final = 512
# NATS's default max_payload (1 MiB): a larger per-message limit could never be reached.
jetstream_msg_bytes_max: Final = 1024 * 1024
# Duplicate detection keeps every id of the window in server memory; a day is far beyond any retry.
jetstream_duplicate_window_s_max: Final = 86_400
# The change feed is derived data, replayable from the database: a year of retention is plenty.
jetstream_max_age_s_max: Final = 365 * 86_400
# KV history per key: nats-py and the server refuse more than 64.
jetstream_kv_history_max: Final = 64
# JetStream clusters have 3 or 5 nodes; the server refuses more than 5 replicas.
jetstream_replicas_max: Final = 5

# --- global writer: database engine and serialization retries (global_writer/db/) ---
# Pooled connections per writer process: group commit needs few, and CockroachDB sizes a cluster
# for about 4 active connections per vCPU across all clients, so more per process only queues.
db_pool_size_max: Final = 64
# Connections above the pool during bursts; capped so a few writers cannot exhaust the server.
db_pool_overflow_max: Final = 64
# Longest wait for a free pooled connection: past it a request should fail, not queue unseen.
db_pool_timeout_s_max: Final = 30
# TCP + TLS + auth handshake: a dead host fails fast instead of hanging every request behind it.
db_connect_timeout_s_max: Final = 60
# Attempts per transaction (first try + retries): contention that outlasts this is an outage.
db_retry_attempts_max: Final = 32
# Ceiling for the backoff cap between attempts: a longer sleep outlives any client's deadline.
db_retry_backoff_ms_max: Final = 10_000
# Region names are SQL identifiers ("us-east1"); PostgreSQL-style names stop at 63 bytes.
db_region_name_chars_max: Final = 63
# The writer's pool, without overflow (global_writer/db/engine.py): key claims, group commits,
# the publisher and checkouts' reads share it; each batches its work, so this covers the peak
# with room to spare, and a burst waits for a connection rather than opening (and closing) one.
writer_db_connections_max: Final = 20
# The event actors' own pool: one connection per event committing at once (each event commits
# one batch at a time), so a few cover the events that are on sale together.
writer_batch_connections_max: Final = 8
# Pooled connections are replaced after this long, before a load balancer's idle timeout (often
# 30-60 min) can cut them under the writer, which does not test connections on checkout.
db_pool_recycle_s: Final = 1_800

# --- service processes (tests, local stack) ---
# A writer runs migrations and connects to three servers before it is ready.
service_start_timeout_s: Final = 60.0
# Graceful stop (drain NATS, close pools) before it is killed.
service_stop_timeout_s: Final = 10.0

# --- social graph (friends' purchases) ---
# Friends one fan can list; the friends index answers in O(friends) per request.
friends_per_user_max: Final = 1_000

# --- regional read node ---
# Compression levels for seat-map variants: each version is compressed once, so spend a little.
seatmap_brotli_level: Final = 9
seatmap_zstd_level: Final = 9
seatmap_gzip_level: Final = 9
# Per section, recent changes kept so an SSE client can resume with Last-Event-ID.
sse_history_versions_max: Final = 1_024
# Deltas are coalesced and sent to SSE clients this often (docs/architecture.md §4: ~100 ms).
sse_tick_s: Final = 0.1
# Messages queued per SSE client; a client that falls this far behind is dropped.
sse_client_queue_events_max: Final = 64
# Comment lines keep idle SSE connections (and proxies) alive.
sse_heartbeat_s: Final = 15.0
# SSE clients per node; past it new ones get 503.
sse_clients_max: Final = 50_000
# Change-feed consumer: messages per fetch, and how long one fetch waits for messages.
feed_fetch_batch_max: Final = 512
feed_fetch_timeout_s: Final = 0.5
# No message and no successful (empty) fetch for this long: re-create the consumer.
feed_watchdog_s: Final = 5.0
# Ephemeral consumers the node abandons are deleted by the server after this.
feed_consumer_inactive_s: Final = 30.0
# Fetching the writer's snapshot endpoint (last resort of a resync).
writer_snapshot_timeout_s: Final = 2.0
# How often a regional node reads its mirror's health (lag, time since the hub last answered).
mirror_check_s: Final = 5.0
# The friends index forgets orders older than the region's SEATS mirror keeps them (max_age_s of
# tessera/resources/nats/jetstream/regional/SEATS.mirror.json), so a node that has run for months
# holds what a node started today would read from the feed; at most this many per order added.
friends_order_retention_s: Final = 7 * 86_400
friends_prune_orders_max: Final = 64

# --- edge (edge/, docs/edge.md) ---

# Micro-cache entries per edge process (keys are path + query + chosen encoding); the least
# recently stored go first. A seat map is small; 65,536 entries of the largest map stay < 1 GiB.
edge_cache_entries_max: Final = 65_536
# A cached body larger than this is passed through uncached.
edge_cache_body_bytes_max: Final = seatmap_bytes_max
# The TTL is the origin's max-age, clamped to this range.
edge_cache_ttl_s_min: Final = 0.1
edge_cache_ttl_s_max: Final = 60.0
# When the origin's Cache-Control names no max-age (the writer's event details).
edge_cache_ttl_default_s: Final = 1.0
# How long past its TTL an entry may be served (X-Cache: STALE) while every origin fails.
edge_stale_s_max: Final = 3_600.0
# One origin request (connect + answer); then the next origin is tried.
edge_origin_timeout_s: Final = 2.0
# An origin that failed is skipped for this long while another one answers.
edge_origin_cooldown_s: Final = 2.0
edge_origins_max: Final = 16
edge_origin_connections_max: Final = 64
# Writes: the writer answers queued requests within its actor's reply timeout; a little margin
# on top. A request whose batch is committing can take longer: the fan gets 504, and the retry
# with the same Idempotency-Key gets 409 in-flight until the batch ends, then the outcome.
edge_writer_timeout_s: Final = actor_reply_timeout_s + 2.0
edge_writer_connect_timeout_s: Final = 2.0
edge_writer_connections_max: Final = 256
# A write waits for one of those connections at most this long (estimated before it queues:
# writes queued x the recent mean forward time / connections); past it the fan gets 503
# `overloaded` at once: told to retry in a second, they do better than waiting out a slow writer.
edge_write_queue_wait_s_max: Final = 1.0
# Writes in flight in one edge process, queued ones included, whatever the estimate says: each
# holds a body of at most fan_request_body_bytes_max, so the queue stays under 64 MiB.
edge_writes_in_flight_max: Final = 4_096
# A writer answer larger than this is refused as malformed (its largest, an order, is ~10 KiB).
edge_writer_answer_bytes_max: Final = 1024 * 1024
# Fan tokens one edge process remembers as verified (each still checked for expiry on use), so a
# fan's writes cost one HMAC check per token rather than one per request.
edge_verified_tokens_max: Final = 65_536
# SSE proxying: chunks are forwarded as they arrive; a stream silent this long (the origin sends
# heartbeats every sse_heartbeat_s) is closed.
edge_sse_idle_s_max: Final = 3 * sse_heartbeat_s
edge_sse_clients_max: Final = 50_000
# Pieces of a stream read from the origin but not yet taken by the fan: past this the edge stops
# reading that origin connection, so a slow fan holds a few SSE events in memory, not a backlog.
edge_stream_chunks_buffered_max: Final = 64
# X-Forwarded-For: at most this many hops are read, from the right.
edge_forwarded_hops_max: Final = 16
edge_trusted_proxies_max: Final = 64
# Rate limits (GCRA): bounds on a configured budget.
edge_rate_per_s_max: Final = 1_000_000.0
edge_rate_burst_max: Final = 1_000_000
# The in-process limiter (reads, and every class while Redis is unreachable) tracks at most this
# many keys; the least recently seen are forgotten (they start again with a full burst).
edge_local_rate_keys_max: Final = 200_000
# The budgets each recent client is charged to, remembered by the in-process check (forgotten all
# at once past this: rebuilding them is cheap, a few MiB at most are kept).
edge_rate_charges_cached_max: Final = 16_384
# A rate-limit call to Redis; past it the local limiter decides, and Redis is not asked again for
# edge_redis_retry_s (so an outage does not cost every request a timeout).
edge_redis_timeout_s: Final = 0.25
edge_redis_retry_s: Final = 1.0
# Waiting room.
edge_admission_rate_per_s_max: Final = 100_000.0
edge_admission_ttl_s_min: Final = 60
edge_admission_ttl_s_max: Final = 3_600
edge_ticket_ttl_s: Final = 48 * 3_600
edge_pow_difficulty_max: Final = 32
edge_pow_challenge_ttl_s: Final = 300
edge_pow_solution_chars_max: Final = 64
edge_signed_token_chars_max: Final = 1_024
# The waiting-room settings are re-read from Redis at most this often per edge process.
edge_room_config_cache_s: Final = 0.5
# A waiting-room call to Redis (one Lua script); past it the fan gets 503 with Retry-After.
edge_room_redis_timeout_s: Final = 1.0
# Events whose waiting-room settings one edge process caches (bounded: event ids come from URLs).
edge_room_configs_cached_max: Final = 10_000
# Unknown ids (docs/api.md, "Unknown ids"): a 404 from an origin is remembered per path in a
# negative cache of its own (never the micro-cache, which a flood of random ids would flush) for
# this long, at most this many paths (the least recently stored go first). Short, because an event
# created meanwhile stays a 404 here until its entry expires.
edge_negative_ttl_s: Final = 5.0
edge_negative_entries_max: Final = 100_000
# Streams one client may hold open through one edge process: per fan (a valid token), and per
# address block (the address for IPv4, its /64 for IPv6: edge/ratelimit.address_budget_key).
edge_sse_streams_per_fan_max: Final = 4
edge_sse_streams_per_address_max: Final = 32

# --- the local stack (tessera up / down) ---

# How often `tessera up` checks that its children still run.
stack_supervise_s: Final = 0.5
# `tessera down`: how long the supervisor gets to stop everything before leftovers are killed.
stack_stop_timeout_s: Final = 60.0
# `tessera up --regions`: one NATS domain, read node and edge each.
stack_regions_max: Final = 5
# A child that dies is started again after a delay that doubles, from the first bound up to the
# second, with each restart of it within stack_restart_window_s: a one-off crash is repaired at
# once, a crash loop is not hammered (and its log is not flooded).
stack_restart_backoff_s_min: Final = 0.5
stack_restart_backoff_s_max: Final = 30.0
# The crash-loop brake: this many restarts of one child within the window and `tessera up` gives
# up on it (after 2.5 minutes of backoff): a child that cannot stay up needs a person, not retries.
stack_restarts_max: Final = 10
stack_restart_window_s: Final = 300.0
# `tessera status` probes every service at once; one probe gives up after this long.
stack_status_probe_timeout_s: Final = 2.0

# --- notifications (notifier/, docs/notifications.md) ---
# RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets, so an address 254.
contact_email_chars_max: Final = 254
# E.164: a country code and subscriber number of at most 15 digits in all.
contact_phone_digits_max: Final = 15
# Attempts (deliveries) one confirmation may get before it is dead-lettered; the setting is
# bounded so a typo cannot keep a failing message cycling for weeks.
notify_attempts_max: Final = 50
# Confirmations one notifier process works on at once (SMTP sends run in threads).
notify_concurrency_max: Final = 256
# Unacknowledged confirmations the consumer hands out (retries waiting out their NAK delay
# count too): past it the server holds back new ones, which is the backpressure we want.
notify_ack_pending_max: Final = 1_024
# Longest wait between two attempts, as a bound on the configured backoff cap.
notify_backoff_s_max: Final = 3_600
# One SMTP conversation or webhook call; bounded so a wedged peer cannot outlive the AckWait.
notify_send_timeout_s_max: Final = 60
# How long the server waits for an ack before redelivering (bound on the setting).
notify_ack_wait_s_max: Final = 600
# "Sent" / "dead" markers outlive any redelivery: ORDERS keeps a message at most 7 days.
notify_marker_ttl_s: Final = 8 * 86_400
# An error quoted in a dead letter (SMTP replies and webhook bodies can be long).
notify_error_chars_max: Final = 1_024
# One fetch from the consumer waits this long for messages before looping.
notify_fetch_timeout_s: Final = 1.0
# On stop, sends in progress get this long to finish before they are cancelled (the messages
# are redelivered after AckWait; the markers stop a second send of what already went out).
notify_drain_s: Final = 5.0
# Webhook response bodies read for an error message.
notify_webhook_body_bytes_max: Final = 4 * 1024
# Integrators' webhooks (notifier/webhooks.py, docs/webhooks.md): endpoints one deployment is
# configured with (each event is one delivery per endpoint, so this bounds the fan-out).
webhook_endpoints_max: Final = 16
# An endpoint's signing secret: at least 128 bits of a hex or base64 secret.
webhook_secret_chars_min: Final = 24
webhook_secret_chars_max: Final = 256
# Deliveries of one event to one endpoint before it is dead-lettered (bound on the setting).
webhook_attempts_max: Final = 50
# One POST to an endpoint, connection to last byte; bounded below the consumer's AckWait.
webhook_timeout_s_max: Final = 30
# The local mail catcher keeps this many messages (oldest dropped first) and this size each.
mailcatcher_messages_max: Final = 10_000
mailcatcher_message_bytes_max: Final = 1024 * 1024

# --- onsale simulator (tessera_ops/onsale.py, docs/onsale.md) ---
# Keep-alive connections the simulator opens to each edge for reads (and to each read node, the
# writer), and for writes: thousands of fans share them, so the simulator's load on a server
# stays bounded. Writes wait for the writer's batches: as many as the edge opens to the writer.
onsale_connections_max: Final = 64
onsale_write_connections_max: Final = 256
# One request, connect to last byte: above the edge's own writer timeout (12 s), so a slow write
# comes back as the edge's 504 rather than as a client-side timeout.
onsale_request_timeout_s: Final = 15.0
# An answer larger than this is refused (the event details of a 70,000-seat stadium are ~0.9 MB).
onsale_response_bytes_max: Final = 64 * 1024 * 1024

# --- the audit (tessera_ops/audit.py) ---
# A regional map may lag the writer by the change feed's delay (milliseconds; seconds after a
# fault heals): maps are compared again every audit_retry_s until equal, for up to this long.
audit_converge_s: Final = 5.0
# A payment may take this long to reach its end (captured, voided, refunded) before the audit
# calls it left open: the settler retries an unreachable provider with backoff for minutes.
audit_payment_settle_s_max: Final = 600.0
audit_retry_s: Final = 0.1
# Seat-map GETs in flight per node while auditing (a stadium has ~100 sections).
audit_connections_max: Final = 16
audit_request_timeout_s: Final = 5.0

# --- serving (tessera/serving.py: every tier under Granian) ---

# The listen backlog (the kernel caps it at net.core.somaxconn).
serve_backlog_max: Final = 4_096
# Requests in progress per worker (SSE streams and waiting keep-alive requests count).
serve_concurrent_requests_max: Final = 65_536
# The edge fast path remembers validated cacheable paths and Accept-Encoding answers (bounded:
# both come from requests; past the bound they are just computed each time).
edge_known_paths_max: Final = 65_536
edge_known_encodings_max: Final = 1_024

# --- onsale simulator: the run ---
onsale_fans_max: Final = 200_000
onsale_duration_s_max: Final = 3_600.0
# A state-changing request is sent at most this many times with one Idempotency-Key (after
# 502/503/504, no answer, 429 or a key still in flight).
onsale_write_attempts_max: Final = 4
# Holds a fan attempts (seats gone, writer busy) before giving up; waiting out a sold-out map
# does not count.
onsale_hold_attempts_max: Final = 8
# Seat-map GETs each bot fires back to back (they share one address per region: 429s).
onsale_bot_reads_max: Final = 60
# Holds whose seats are followed until they show as taken in every region (the feed-lag probe),
# how often they are looked at, and for how long at most.
onsale_lag_probes_max: Final = 200
onsale_lag_probe_interval_s: Final = 0.01
onsale_lag_probe_s_max: Final = 5.0
# The writer releases an expired hold within ~1 s (docs/architecture.md §3); past its deadline plus
# this, an abandoned hold must read `expired`.
onsale_expiry_slack_s: Final = 3.0
# After the sale, how long the simulator waits at most for abandoned holds' deadlines (the
# default; holds still within their TTL then are reported, not failed). With the demo event's
# 30 s holds this keeps the default run near a minute.
onsale_expiry_wait_s_max: Final = 20.0
# The live table's refresh, and the status line's period without one.
onsale_progress_s: Final = 0.25
onsale_status_line_s: Final = 5.0

# --- events: onsale_at bounds ---
# An event's `onsale_at`, in years (as given). The PostgreSQL driver stores Python's first and
# last instants as -infinity/infinity and reads them back without a time zone, which broke every
# hold on the event (a 500; found by tests/fuzz).
onsale_at_year_min: Final = 1970
onsale_at_year_max: Final = 9998

# --- global writer: forwarding to an event's lease holder (global_writer/forwarding.py) ---
# How long a writer trusts what it read of an event's lease before reading it again: a stale entry
# costs one 503 (the old owner refuses a forwarded request), never a wrong write.
writer_owner_cache_s: Final = 1.0
writer_owner_cache_events_max: Final = 65_536
# Keep-alive connections from one writer to one other writer, and the wait for a free one before
# the request is refused 503 (the owner is the bottleneck then, not this hop).
writer_forward_connections_max: Final = 256
writer_forward_queue_wait_s_max: Final = 1.0
# A forwarded request's answer: above the owner's own queue bound (actor_reply_timeout_s) plus a
# payment, so a slow answer is the owner's, not cut here; connecting to a dead owner fails fast.
writer_forward_timeout_s: Final = 15.0
writer_forward_connect_timeout_s: Final = 1.0
# Other writers a writer keeps connections to (one pool each); past it the oldest pool is closed.
writer_forward_pools_max: Final = 64

# --- tickets and the door (tessera/tickets.py, global_writer/tickets.py, docs/tickets.md) ---
# A ticket token as text (`T1.<payload>.<signature>`, base32): about 260 characters for the
# longest seat and user ids; anything longer is refused before it is decoded.
ticket_token_chars_max: Final = 512
# A signing key's id (`kid`): short, it travels inside every token.
ticket_kid_chars_max: Final = 32
# Keys in the signing ring plus retired public keys still published (TESSERA_TICKET_SIGNING_KEYS).
ticket_keys_max: Final = 16
# Door staff credentials (TESSERA_DOOR_STAFF_KEYS): names, and the keys' lengths.
door_staff_credentials_max: Final = 64
door_staff_name_chars_max: Final = 64
door_staff_key_chars_min: Final = 32
door_staff_key_chars_max: Final = 256
# A gate's name as a scanner reports it (`gate` in POST /v1/tickets/scan).
door_gate_chars_max: Final = 64
# The scan body: a token, an event id, a gate and a scan id, far below this.
door_scan_body_bytes_max: Final = 2_048
# A scanner caches the published verification keys this long (Cache-Control of GET
# /v1/tickets/keys): a key published before it signs reaches every scanner within this time.
ticket_keys_max_age_s: Final = 300

# --- presales (global_writer/presales.py, docs/presales.md) ---
# Waves of an event (fan club, card holders…), each before the general sale (`onsale_at`).
presale_waves_max: Final = 8
presale_wave_id_chars_max: Final = 32
presale_name_chars_max: Final = 100
# Access codes of one wave, and a code's length (codes are stored as their SHA-256 only).
presale_codes_max: Final = 1_000
presale_code_chars_min: Final = 4
presale_code_chars_max: Final = 64
# How many fans one code admits (each fan counts once, however many holds they make).
presale_code_uses_max: Final = 1_000_000
# Fans listed for one wave (kept in the writer's memory while the event is open).
presale_eligible_users_max: Final = 10_000
