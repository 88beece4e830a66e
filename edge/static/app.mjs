// The seat-map page (docs/web-page.md), served by the edge at /events/{event_id}. Plain ES
// modules, no framework, no build. It only uses the edge's public fan API:
//
//   GET  /v1/events/{id}                     the venue: sections, rows, seat ids, price tiers
//                                            (edge-cached)
//   GET  /v1/events/{id}/seatmap             the binary seat map (seatmap.mjs decodes it)
//   GET  /v1/events/{id}/seatmap/stream      SSE: a snapshot, then deltas (docs/regional.md)
//   POST /v1/dev/token                       a fan token (local stacks only)
//   POST /v1/events/{id}/queue, GET /v1/queue/{ticket}     the waiting room
//   GET  /v1/events/{id}/queue/challenge     proof of work, when joining asks for it
//   POST /v1/events/{id}/holds, POST /v1/events/{id}/holds/{hold}/extend,
//   DELETE /v1/events/{id}/holds/{hold}, POST /v1/events/{id}/orders
//   GET  /v1/events/{id}/friends, GET /v1/me, PUT /v1/me/sharing, PUT /v1/me/friends/{id}
//
// window.tessera exposes a few read-only probes for tests (seatState reads the drawn pixel).

import { formatMoney } from './money.mjs';
import { queuePollMs } from './queue.mjs';
import { decodeEvent } from './seatmap.mjs';
import { Detail, LABELS, Overview, PALETTE, TIER_COLOURS, layoutVenue } from './view.mjs';

const EVENT_ID = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const FRIENDS_EVERY_MS = 5000;
const FRIENDS_SOON_AFTER_MS = 500;
const FRIENDS_SOON_EVERY_MS = 2000;
const MAP_POLL_MS = 2000; // only while the stream is down
const HOLD_SEATS_MAX = 10;
const RETRYABLE = new Set([0, 502, 503, 504]); // no answer: retry with the same Idempotency-Key
// Screen readers hear the countdown only as it passes these (seconds left), not every second.
const ANNOUNCE_AT_S = [300, 60, 30];
const POW_ALGORITHM = 'sha256-leading-zero-bits';
// Fresh challenges tried when a solved one is refused (the difficulty was raised meanwhile).
const POW_ATTEMPTS_MAX = 3;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const venue = { sections: [], ids: [], index: new Map(), position: new Map(), layout: null };
const seats = { bitmaps: null, versions: null, live: false, updatedAt: null };
const marks = { selected: new Set(), held: new Set(), bought: new Set(), friends: new Map() };
// Price tiers: `seat[s][i]` is the index in `tiers` of seat i of section s, or -1 (unpriced).
const prices = { currency: 'USD', exponent: 2, tiers: [], seat: [] };
const fan = {
  user: null,
  token: null,
  ticket: null,
  poll: null, // the timer of the next queue poll
  admission: null,
  hold: null,
  announced: new Set(), // the countdown thresholds announced for the current hold
  pending: null, // { fingerprint, key } of a write that got no answer
};
let overview = null;
let detail = null;
let draws = 0;
let mapDrawn = false; // a draw happened with a seat map in hand

// --- the API ---------------------------------------------------------------------------------

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts (https, localhost) only
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) =>
    b.toString(16).padStart(2, '0'),
  ).join('');
}

async function api(method, path, { body, auth = false, admission = false, key = null } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth) headers.Authorization = `Bearer ${fan.token}`;
  if (admission && fan.admission) headers['X-Admission-Token'] = fan.admission;
  if (key) headers['Idempotency-Key'] = key;
  let response;
  try {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    response = await fetch(path, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, 'network_error', 'the edge cannot be reached; try again');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? response.statusText,
    );
  }
  return data;
}

// A state-changing POST: the same Idempotency-Key for a retry of a request that got no answer
// (so it cannot take effect twice), a new one after any answer.
async function write(path, body) {
  const fingerprint = `${path} ${JSON.stringify(body)}`;
  if (fan.pending?.fingerprint !== fingerprint) fan.pending = { fingerprint, key: newKey() };
  try {
    const { key } = fan.pending;
    const data = await api('POST', path, { body, auth: true, admission: true, key });
    fan.pending = null;
    return data;
  } catch (error) {
    if (!RETRYABLE.has(error.status)) fan.pending = null;
    throw error;
  }
}

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle('error', isError);
}

const problem = (error) => `${error.code}: ${error.message}`;

// Sparingly, for screen readers: state changes and a few countdown thresholds.
function announce(text) {
  $('announce').textContent = text;
}

// --- prices ----------------------------------------------------------------------------------

const money = (minor) => formatMoney(minor, prices.currency, prices.exponent);

/** An amount in `currency`: the event's exponent for the event's currency; for any other, the
 *  fraction digits the browser knows for it. */
function moneyIn(minor, currency) {
  if (currency === prices.currency) return money(minor);
  try {
    const format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    return formatMoney(minor, currency, format.resolvedOptions().maximumFractionDigits);
  } catch {
    return `${minor} ${currency} (minor units)`;
  }
}

function loadPrices(event) {
  prices.currency = event.currency ?? event.price_tiers[0]?.currency ?? 'USD';
  prices.exponent = event.currency_exponent ?? 2;
  prices.tiers = event.price_tiers.map((tier, k) => ({
    ...tier,
    colour: TIER_COLOURS[k % TIER_COLOURS.length],
  }));
  const byId = new Map(prices.tiers.map((tier, k) => [tier.id, k]));
  const tierOf = (id) => (id === null || id === undefined ? -1 : (byId.get(id) ?? -1));
  prices.seat = event.sections.map((section) => {
    const tiers = new Int16Array(section.rows.reduce((n, row) => n + row.seats.length, 0));
    let i = 0;
    for (const row of section.rows) {
      const overrides = row.seat_price_tiers ?? {};
      for (const id of row.seats) {
        tiers[i++] = tierOf(overrides[id.split(':')[2]] ?? row.price_tier);
      }
    }
    return tiers;
  });
}

/** The price tier of a seat id, or null. */
function tierOfSeat(id) {
  const at = venue.index.get(id);
  const k = at === undefined ? -1 : prices.seat[at[0]][at[1]];
  return k < 0 ? null : prices.tiers[k];
}

const priceOf = (id) => tierOfSeat(id)?.price ?? 0;
const total = (ids) => [...ids].reduce((sum, id) => sum + priceOf(id), 0);

function outlineOf(s, i) {
  const k = prices.seat[s][i];
  return k < 0 ? null : prices.tiers[k].colour;
}

function priceLegend() {
  const list = $('prices');
  list.replaceChildren();
  for (const tier of prices.tiers) {
    const item = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = 'swatch tier';
    swatch.style.borderColor = tier.colour;
    item.append(swatch, `${tier.name}: ${money(tier.price)}`);
    list.append(item);
  }
  $('prices-title').hidden = prices.tiers.length === 0;
}

// --- seat states and drawing -----------------------------------------------------------------

function isAvailable(s, i) {
  return seats.bitmaps !== null && ((seats.bitmaps[s][i >> 3] >> (i & 7)) & 1) === 1;
}

function stateOf(s, i) {
  const id = venue.ids[s][i];
  if (marks.selected.has(id)) return 'selected';
  if (marks.held.has(id)) return 'held';
  if (marks.bought.has(id)) return 'bought';
  if (marks.friends.has(id)) return 'friend';
  return isAvailable(s, i) ? 'available' : 'taken';
}

let drawQueued = false;

function redraw() {
  if (drawQueued || overview === null) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    overview.draw(stateOf);
    detail.draw(stateOf, outlineOf);
    updateSeatButtons();
    draws += 1;
    mapDrawn ||= seats.bitmaps !== null;
    showCounts();
  });
}

function showCounts() {
  if (seats.bitmaps === null) return;
  let available = 0;
  venue.layout.counts.forEach((count, s) => {
    for (let i = 0; i < count; i++) available += isAvailable(s, i) ? 1 : 0;
  });
  const total = venue.layout.counts.reduce((a, b) => a + b, 0);
  const when = seats.updatedAt ? ` · updated ${seats.updatedAt.toLocaleTimeString()}` : '';
  const of = `${available.toLocaleString()} of ${total.toLocaleString()}`;
  say('counts', `${of} seats available${when}`);
}

// Seat ids in venue order (section, then row-major), for people to read.
function inOrder(ids) {
  const rank = (id) => {
    const [s, i] = venue.index.get(id) ?? [Infinity, 0];
    return s * 65536 + i;
  };
  return [...ids].sort((a, b) => rank(a) - rank(b));
}

function setBit(id, available) {
  const at = venue.index.get(id);
  if (at === undefined) return;
  const [s, i] = at;
  if (available) seats.bitmaps[s][i >> 3] |= 1 << (i & 7);
  else seats.bitmaps[s][i >> 3] &= ~(1 << (i & 7));
}

// --- the live seat map -------------------------------------------------------------------------

// Stream frames and fetched maps are applied one at a time, in arrival order (decoding is async).
let chain = Promise.resolve();
const serial = (task) => {
  chain = chain.then(task).catch((error) => say('live', `seat map error: ${error.message}`, true));
};

async function decode(bytes) {
  const map = await decodeEvent(bytes, venue.layout.counts);
  return map.sections.map((section) => Uint8Array.from(section.bitmap));
}

async function fetchMap(always) {
  const response = await fetch(`/v1/events/${EVENT_ID}/seatmap`, { cache: 'no-cache' });
  if (!response.ok) return;
  const bytes = new Uint8Array(await response.arrayBuffer());
  serial(async () => {
    // The stream's snapshot is newer than a cached map: a fetched map only fills the gap
    // before the first snapshot, or while the stream is down.
    if (!always && seats.bitmaps !== null) return;
    seats.bitmaps = await decode(bytes);
    seats.updatedAt = new Date();
    redraw();
  });
}

function applySnapshot(data) {
  return async () => {
    const bytes = Uint8Array.from(atob(data.seatmap), (c) => c.charCodeAt(0));
    seats.bitmaps = await decode(bytes);
    seats.versions = data.versions.slice();
    seats.updatedAt = new Date();
    for (const id of marks.selected) {
      const [s, i] = venue.index.get(id);
      if (!isAvailable(s, i)) marks.selected.delete(id);
    }
    updateButtons();
    redraw();
  };
}

function applyDelta(data) {
  return () => {
    if (seats.versions === null) return;
    let sold = false;
    for (const change of data.sections) {
      const s = venue.position.get(change.section_id);
      if (s === undefined || change.version <= seats.versions[s]) continue; // already applied
      for (const id of change.taken) {
        setBit(id, false);
        marks.selected.delete(id);
      }
      for (const id of change.freed) setBit(id, true);
      seats.versions[s] = change.version;
      // A new version that changed no public bit: held seats were sold (or blocked).
      sold ||= change.taken.length === 0 && change.freed.length === 0;
    }
    seats.updatedAt = new Date();
    if (sold) refreshFriendsSoon();
    redraw();
  };
}

function setLive(live) {
  seats.live = live;
  say('live', live ? 'live' : 'reconnecting…', !live);
}

function openStream() {
  const source = new EventSource(`/v1/events/${EVENT_ID}/seatmap/stream`);
  source.addEventListener('snapshot', (e) => serial(applySnapshot(JSON.parse(e.data))));
  source.addEventListener('delta', (e) => serial(applyDelta(JSON.parse(e.data))));
  source.onopen = () => setLive(true);
  source.onerror = () => {
    setLive(false);
    // The browser reconnects by itself (resuming with Last-Event-ID) unless the edge refused
    // the stream outright; then start a new one a little later.
    if (source.readyState === EventSource.CLOSED) setTimeout(openStream, 3000);
  };
}

// --- signing in, the queue, holds, checkout --------------------------------------------------

function tokenUser(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).sub;
  } catch {
    return null;
  }
}

async function signIn(event) {
  event.preventDefault();
  const given = $('user').value.trim();
  if (!given) return;
  let token = given;
  let user = given.split('.').length === 3 ? tokenUser(given) : null;
  try {
    if (user === null) {
      user = given;
      token = (await api('POST', '/v1/dev/token', { body: { user_id: given } })).token;
    }
  } catch (error) {
    const hint = error.status === 404 ? ' (dev tokens are off on this edge: paste a JWT)' : '';
    say('who', `${problem(error)}${hint}`, true);
    return;
  }
  clearHold();
  Object.assign(fan, { user, token, ticket: null, admission: null, pending: null });
  marks.bought.clear();
  marks.friends.clear();
  clearTimeout(fan.poll);
  say('who', `Signed in as ${user}.`);
  say('queue-status', 'Join the queue to hold seats.');
  say('result', '');
  updateButtons();
  refreshMe();
  refreshFriends();
  redraw();
}

async function join(proof = undefined, attempt = 0) {
  $('join').disabled = true;
  try {
    const joined = await api('POST', `/v1/events/${EVENT_ID}/queue`, { auth: true, body: proof });
    fan.ticket = joined.ticket;
    onTicket(joined);
  } catch (error) {
    const pow = error.code === 'proof_of_work_required' || error.code === 'proof_of_work_invalid';
    if (pow && attempt < POW_ATTEMPTS_MAX) {
      await solveAndJoin(attempt + 1);
      return;
    }
    say('queue-status', problem(error), true);
    updateButtons();
  }
}

// Under attack the edge wants a solved challenge with the join (edge/pow.py): solved in a Web
// Worker (pow-worker.mjs) so the page stays responsive, with its progress shown. Each attempt
// is a geometric draw: the bar shows the expected work done, and may pass it.
async function solveAndJoin(attempt) {
  let challenge;
  try {
    challenge = await api('GET', `/v1/events/${EVENT_ID}/queue/challenge`);
  } catch (error) {
    say('queue-status', problem(error), true);
    updateButtons();
    return;
  }
  if (challenge.algorithm !== POW_ALGORITHM) {
    say('queue-status', `unknown proof of work ${challenge.algorithm}`, true);
    updateButtons();
    return;
  }
  const bar = $('pow-progress');
  bar.hidden = false;
  bar.value = 0;
  say('queue-status', 'The queue asks this browser to prove it is not a bot: working…');
  announce('Proving this browser is not a bot before joining the queue.');
  const expected = 2 ** challenge.difficulty;
  let solution;
  try {
    solution = await solveInWorker(challenge, (tried) => {
      const share = Math.min(99, Math.floor((100 * tried) / expected));
      bar.value = share;
      say('queue-status', `Proving this browser is not a bot: ${share}% of the expected work…`);
    });
  } catch (error) {
    say('queue-status', `proof of work failed: ${error.message}`, true);
    updateButtons();
    return;
  } finally {
    bar.hidden = true;
  }
  await join({ challenge: challenge.challenge, solution }, attempt);
}

function solveInWorker(challenge, onProgress) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./pow-worker.mjs', import.meta.url), { type: 'module' });
    worker.onmessage = (event) => {
      if (event.data.progress !== undefined) {
        onProgress(event.data.progress);
        return;
      }
      worker.terminate();
      resolve(event.data.solution);
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(event.message || 'the proof-of-work worker failed'));
    };
    worker.postMessage({ challenge: challenge.challenge, difficulty: challenge.difficulty });
  });
}

function onTicket(status) {
  clearTimeout(fan.poll);
  if (status.state === 'admitted') {
    fan.admission = status.admission_token;
    say('queue-status', 'Admitted: you can hold seats.');
    announce('Admitted: you can hold seats.');
    updateButtons();
    return;
  }
  const place =
    status.position === null
      ? 'your place is drawn when the queue opens'
      : `position ${status.position.toLocaleString()}`;
  const eta = status.eta_s === null ? '' : `, about ${Math.ceil(status.eta_s)} s to go`;
  const wait = queuePollMs(status);
  const next = `next check in ${Math.round(wait / 1000)} s`;
  say('queue-status', `Waiting: ${place}${eta} (${next}).`);
  fan.poll = setTimeout(pollTicket, wait);
}

async function pollTicket() {
  try {
    onTicket(await api('GET', `/v1/queue/${encodeURIComponent(fan.ticket)}`));
  } catch (error) {
    if (error.code === 'ticket_not_found') return join();
    say('queue-status', `${problem(error)} (retrying)`, true);
    fan.poll = setTimeout(pollTicket, 3000);
  }
}

// The edge's refusals that a new place in this region's queue cures: no admission, one from
// another region (the fan's traffic moved), or one for another event.
const READMIT_CODES = new Set(['admission_required', 'admission_wrong_region', 'admission_wrong_event']);

function writeFailed(error, where) {
  say(where, problem(error), true);
  if (READMIT_CODES.has(error.code)) {
    fan.admission = null;
    say('queue-status', 'Your admission is no longer valid: join the queue again.', true);
    updateButtons();
  }
}

async function hold(body) {
  // A presale wave's access code goes with every hold; the writer ignores it in the general sale.
  const code = $('presale-code').value.trim();
  if (code) body.presale_code = code;
  try {
    setHold(await write(`/v1/events/${EVENT_ID}/holds`, body));
    say('result', '');
  } catch (error) {
    writeFailed(error, 'result');
  }
}

function setHold(data) {
  fan.hold = data;
  marks.selected.clear();
  for (const id of data.seats) marks.held.add(id);
  const at = venue.index.get(data.seats[0]);
  if (at !== undefined && at[0] !== detail.index) showSection(at[0]);
  const amount = data.amount ?? total(data.seats);
  const price = moneyIn(amount, data.currency ?? prices.currency);
  const extended = data.extended ? ' (extended)' : '';
  say('hold', `Holding ${inOrder(data.seats).join(', ')} · total ${price}${extended}.`);
  const left = Date.parse(data.expires_at) - Date.now();
  // Thresholds already behind are not announced; this message says how long there is.
  fan.announced = new Set(ANNOUNCE_AT_S.filter((at) => at * 1000 >= left));
  const minutes = Math.max(1, Math.round(left / 60000));
  announce(`Holding ${data.seats.length} seats, total ${price}, about ${minutes} min to buy.`);
  tick();
  updateButtons();
  redraw();
}

function clearHold() {
  if (fan.hold) for (const id of fan.hold.seats) marks.held.delete(id);
  fan.hold = null;
  fan.announced = new Set();
  say('hold', 'No seats held.');
  say('countdown', '');
  updateButtons();
  redraw();
}

function tick() {
  if (!fan.hold) return;
  const left = Math.max(0, Date.parse(fan.hold.expires_at) - Date.now());
  if (left === 0) {
    clearHold();
    say('result', 'The hold expired: the seats are free again.', true);
    announce('The hold expired: the seats are free again.');
    return;
  }
  const s = Math.floor(left / 1000);
  say('countdown', `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')} left to buy`);
  // The visible countdown is not a live region; this says it at a few thresholds only.
  const due = ANNOUNCE_AT_S.find((at) => s < at && !fan.announced.has(at));
  if (due !== undefined) {
    for (const at of ANNOUNCE_AT_S) if (at >= due) fan.announced.add(at);
    const words = due >= 60 ? `${due / 60} minute${due > 60 ? 's' : ''}` : `${due} seconds`;
    announce(`${words} left to buy.`);
  }
}

async function extend() {
  if (!fan.hold || fan.hold.extended) return;
  try {
    setHold(await write(`/v1/events/${EVENT_ID}/holds/${fan.hold.hold_id}/extend`, undefined));
    say('result', 'Extended: the hold lasts longer now (once per hold).');
  } catch (error) {
    writeFailed(error, 'result');
    if (error.status === 409 && error.code === 'hold_already_extended') {
      fan.hold.extended = true;
      updateButtons();
    }
  }
}

async function buy() {
  if (!fan.hold) return;
  const body = { hold_id: fan.hold.hold_id, payment_token: $('payment').value };
  say('result', 'Paying…');
  $('buy').disabled = true;
  try {
    const order = await write(`/v1/events/${EVENT_ID}/orders`, body);
    for (const id of order.seats) marks.bought.add(id);
    clearHold();
    const what = `${inOrder(order.seats).join(', ')} for ${moneyIn(order.amount, order.currency)}`;
    say('result', `Bought ${what} (order ${order.order_id}).`);
    announce(`Bought ${order.seats.length} seats for ${moneyIn(order.amount, order.currency)}.`);
  } catch (error) {
    writeFailed(error, 'result');
    if (error.status === 409 && error.code.startsWith('hold_')) clearHold();
  }
  updateButtons();
}

async function release() {
  if (!fan.hold) return;
  try {
    const path = `/v1/events/${EVENT_ID}/holds/${fan.hold.hold_id}`;
    await api('DELETE', path, { auth: true, admission: true });
    clearHold();
    say('result', 'Released.');
    announce('Released: the seats are free again.');
  } catch (error) {
    writeFailed(error, 'result');
  }
}

function updateButtons() {
  const admitted = fan.admission !== null;
  $('join').disabled = fan.token === null || admitted;
  $('best').disabled = !admitted || fan.hold !== null;
  $('hold-selected').disabled = !admitted || fan.hold !== null || marks.selected.size === 0;
  $('buy').disabled = fan.hold === null;
  $('extend').disabled = fan.hold === null || fan.hold.extended;
  $('release').disabled = fan.hold === null;
  $('share').disabled = fan.token === null;
  $('add-friend-button').disabled = fan.token === null;
  const selected = inOrder(marks.selected).map((id) => `${id} (${money(priceOf(id))})`);
  say(
    'selection',
    selected.length
      ? `Selected: ${selected.join(', ')} · total ${money(total(marks.selected))}`
      : 'Click seats (or Tab to them and press Enter) to select them.',
  );
}

// --- friends ---------------------------------------------------------------------------------

async function refreshFriends() {
  if (fan.token === null) return;
  try {
    const data = await api('GET', `/v1/events/${EVENT_ID}/friends`, { auth: true });
    marks.friends = new Map(data.friends.flatMap((f) => f.seats.map((id) => [id, f.user_id])));
    const names = data.friends.map((f) => `${f.user_id} (${inOrder(f.seats).join(', ')})`);
    say('friends-list', names.length ? `Friends here: ${names.join('; ')}` : '');
    redraw();
  } catch (error) {
    say('friends-list', problem(error), true);
  }
}

let friendsDue = 0;

// After a sale, ask for friends' seats sooner than the next poll: a moment later (the order
// reaches the friends index just after the seat change) and at most every few seconds.
function refreshFriendsSoon() {
  const now = Date.now();
  if (fan.token === null || now < friendsDue) return;
  friendsDue = now + FRIENDS_SOON_EVERY_MS;
  setTimeout(refreshFriends, FRIENDS_SOON_AFTER_MS);
}

async function refreshMe() {
  try {
    const me = await api('GET', '/v1/me', { auth: true });
    $('share').checked = me.share_purchases;
    const friends = me.friends.join(', ') || 'none yet';
    say('friends-of', `Your friends: ${friends}.`);
  } catch (error) {
    say('friends-of', problem(error), true);
  }
}

async function setSharing() {
  try {
    await api('PUT', '/v1/me/sharing', { body: { share: $('share').checked }, auth: true });
  } catch (error) {
    say('friends-of', problem(error), true);
  }
  refreshMe();
}

async function addFriend(event) {
  event.preventDefault();
  const friend = $('friend').value.trim();
  if (!friend) return;
  try {
    await api('PUT', `/v1/me/friends/${encodeURIComponent(friend)}`, { auth: true });
    $('friend').value = '';
  } catch (error) {
    say('friends-of', problem(error), true);
    return;
  }
  refreshMe();
}

// --- choosing sections and seats ----------------------------------------------------------------

function showSection(index) {
  overview.highlight = index;
  detail.show(venue.sections[index], index);
  say('section-name', `Section ${venue.sections[index].name}`);
  $('section-picker').value = String(index);
  buildSeatButtons();
  redraw();
}

function onOverviewClick(event) {
  const rect = overview.canvas.getBoundingClientRect();
  const index = overview.sectionAt(event.clientX - rect.left, event.clientY - rect.top);
  if (index !== null) showSection(index);
}

function toggleSeat(i) {
  const s = detail.index;
  const id = venue.ids[s][i];
  if (marks.selected.has(id)) marks.selected.delete(id);
  else if (isAvailable(s, i) && marks.selected.size < HOLD_SEATS_MAX) marks.selected.add(id);
  else return;
  const count = marks.selected.size;
  announce(count ? `${count} selected, total ${money(total(marks.selected))}` : 'None selected');
  updateButtons();
  redraw();
}

// The detail canvas is drawn for the eyes. Over every seat lies a transparent button, so seats
// are reachable with Tab (one tab stop for the section: a roving tabindex), moved between with
// the arrow keys, Home and End, chosen with Enter or Space (a mouse click lands on the same
// button), and named for screen readers: "Section Lower 101, row A, seat 5, $45.00, available".

const seatButtons = { list: [], rows: [], rowOf: [], focus: 0, labels: [] };
const STATE_WORDS = Object.freeze({
  available: 'available',
  taken: 'taken',
  selected: 'selected',
  held: 'held by you',
  bought: 'bought by you',
  friend: "a friend's",
});

function buildSeatButtons() {
  const box = $('seat-buttons');
  const { section, pitch, canvas } = detail;
  box.replaceChildren();
  box.setAttribute('aria-label', `Seats of section ${section.name}`);
  Object.assign(box.style, {
    left: `${canvas.offsetLeft}px`,
    top: `${canvas.offsetTop}px`,
    width: canvas.style.width,
    height: canvas.style.height,
  });
  Object.assign(seatButtons, { list: [], rows: [], rowOf: [], labels: [] });
  let i = 0;
  section.rows.forEach((row, r) => {
    const group = document.createElement('div');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', `Row ${row.row_id}`);
    const first = i;
    for (let j = 0; j < row.seats.length; j++) {
      const [x, y] = detail.pointOf(i);
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'seat';
      button.tabIndex = -1;
      button.dataset.seat = String(i);
      Object.assign(button.style, {
        left: `${x - pitch / 2}px`,
        top: `${y - pitch / 2}px`,
        width: `${pitch}px`,
        height: `${pitch}px`,
      });
      group.append(button);
      seatButtons.list.push(button);
      seatButtons.rowOf.push(r);
      seatButtons.labels.push('');
      i++;
    }
    seatButtons.rows.push([first, i]);
    box.append(group);
  });
  const s = detail.index;
  const free = seatButtons.list.findIndex((_, k) => isAvailable(s, k));
  seatButtons.focus = Math.max(0, free);
  seatButtons.list[seatButtons.focus].tabIndex = 0;
  updateSeatButtons();
}

function updateSeatButtons() {
  const { list, labels, rowOf } = seatButtons;
  if (detail === null || list.length === 0) return;
  const s = detail.index;
  const { section } = detail;
  for (let i = 0; i < list.length; i++) {
    const id = venue.ids[s][i];
    const state = stateOf(s, i);
    const tier = tierOfSeat(id);
    const price = tier ? `${money(tier.price)} (${tier.name})` : 'no price';
    const seat = id.split(':')[2];
    const row = section.rows[rowOf[i]].row_id;
    const where = `Section ${section.name}, row ${row}, seat ${seat}`;
    const label = `${where}, ${price}, ${STATE_WORDS[state]}`;
    if (label === labels[i]) continue;
    labels[i] = label;
    const button = list[i];
    button.setAttribute('aria-label', label);
    button.setAttribute('aria-pressed', String(state === 'selected'));
    button.setAttribute('aria-disabled', String(state !== 'available' && state !== 'selected'));
  }
}

function focusSeat(i) {
  const { list } = seatButtons;
  list[seatButtons.focus].tabIndex = -1;
  seatButtons.focus = i;
  list[i].tabIndex = 0;
  list[i].focus();
}

/** The seat an arrow key moves to from seat `i`. */
function seatFrom(i, key) {
  const { rows, rowOf } = seatButtons;
  const r = rowOf[i];
  const [start, end] = rows[r];
  if (key === 'ArrowLeft') return Math.max(start, i - 1);
  if (key === 'ArrowRight') return Math.min(end - 1, i + 1);
  if (key === 'Home') return start;
  if (key === 'End') return end - 1;
  const to = r + (key === 'ArrowUp' ? -1 : 1);
  if (to < 0 || to >= rows.length) return i;
  // The seat of that row nearest to this one's position: rows are centred, lengths differ.
  const x = detail.pointOf(i)[0];
  let best = rows[to][0];
  for (let k = rows[to][0]; k < rows[to][1]; k++) {
    if (Math.abs(detail.pointOf(k)[0] - x) < Math.abs(detail.pointOf(best)[0] - x)) best = k;
  }
  return best;
}

const SEAT_KEYS = new Set(['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End']);

function onSeatKey(event) {
  const i = Number(event.target.dataset?.seat);
  if (!SEAT_KEYS.has(event.key) || Number.isNaN(i)) return;
  event.preventDefault();
  focusSeat(seatFrom(i, event.key));
}

function onSeatClick(event) {
  const button = event.target.closest('button.seat');
  if (button === null) return;
  const i = Number(button.dataset.seat);
  if (i !== seatButtons.focus) focusSeat(i);
  toggleSeat(i);
}

// --- start -----------------------------------------------------------------------------------

function legend() {
  const list = $('legend');
  for (const [state, colour] of Object.entries(PALETTE)) {
    const item = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = colour;
    item.append(swatch, LABELS[state]);
    list.append(item);
  }
}

function sectionPicker() {
  const picker = $('section-picker');
  venue.sections.forEach((section, index) => {
    const option = document.createElement('option');
    option.value = String(index);
    option.textContent = section.name;
    picker.append(option);
  });
}

// The presale wave open now (docs/presales.md), by this browser's clock: the event document's
// `active_presale` is as old as the edge's cache of it, the windows are not.
function activePresale(presales, now) {
  return (presales ?? []).find(
    (wave) => Date.parse(wave.starts_at) <= now && now < Date.parse(wave.ends_at),
  );
}

function showPresale(event) {
  const wave = Date.parse(event.onsale_at) <= Date.now()
    ? undefined
    : activePresale(event.presales, Date.now());
  $('presale-code-field').hidden = !wave?.code_required;
  if (!wave) {
    const next = (event.presales ?? []).find((w) => Date.parse(w.starts_at) > Date.now());
    const upcoming = next
      ? `Presale ${next.name} from ${new Date(next.starts_at).toLocaleString()}`
      : '';
    say('presale', upcoming);
    return;
  }
  const until = new Date(wave.ends_at).toLocaleString();
  const where = wave.section_ids.length ? ` · sections ${wave.section_ids.join(', ')}` : '';
  const who = wave.code_required ? 'with a presale code' : 'for listed fans';
  const limit = `up to ${wave.per_user_limit} seats per fan`;
  say('presale', `Presale now: ${wave.name} (${who}) until ${until} · ${limit}${where}`);
}

async function start() {
  legend();
  let event;
  try {
    event = await api('GET', `/v1/events/${encodeURIComponent(EVENT_ID)}`);
  } catch (error) {
    say('event-name', error.status === 404 ? 'No such event' : problem(error), true);
    return;
  }
  document.title = `${event.name} · Tessera`;
  say('event-name', event.name);
  const onsale = new Date(event.onsale_at).toLocaleString();
  const when = event.status === 'onsale' ? 'On sale' : `On sale from ${onsale}`;
  const ttl = event.hold_ttl_s;
  const lasts = ttl >= 120 ? `${Math.round(ttl / 60)} min` : `${ttl} s`;
  const rules = `up to ${event.per_user_limit} seats per fan · holds last ${lasts}`;
  say('event-meta', `${when} · ${rules}`);
  showPresale(event);
  // A wave opens or closes while the page is open: the line follows the windows.
  setInterval(() => showPresale(event), 30_000);
  venue.sections = event.sections;
  venue.ids = event.sections.map((section) => section.rows.flatMap((row) => row.seats));
  venue.ids.forEach((ids, s) => ids.forEach((id, i) => venue.index.set(id, [s, i])));
  event.sections.forEach((section, s) => venue.position.set(section.section_id, s));
  venue.layout = layoutVenue(event.sections);
  loadPrices(event);
  priceLegend();
  sectionPicker();
  overview = new Overview($('overview'), venue.layout, venue.sections);
  detail = new Detail($('detail'));
  overview.resize();
  showSection(0);
  $('overview').addEventListener('click', onOverviewClick);
  $('section-picker').addEventListener('change', (e) => showSection(Number(e.target.value)));
  $('seat-buttons').addEventListener('click', onSeatClick);
  $('seat-buttons').addEventListener('keydown', onSeatKey);
  window.addEventListener('resize', () => {
    overview.resize();
    detail.show(detail.section, detail.index);
    buildSeatButtons();
    redraw();
  });
  $('signin').addEventListener('submit', signIn);
  $('join').addEventListener('click', () => join());
  $('best').addEventListener('click', () =>
    hold({ best_available: { quantity: Number($('quantity').value), adjacent: true } }),
  );
  $('hold-selected').addEventListener('click', () => hold({ seats: [...marks.selected] }));
  $('buy').addEventListener('click', buy);
  $('extend').addEventListener('click', extend);
  $('release').addEventListener('click', release);
  $('share').addEventListener('change', setSharing);
  $('add-friend').addEventListener('submit', addFriend);
  updateButtons();
  openStream();
  fetchMap(false).catch(() => {});
  setInterval(tick, 250);
  setInterval(refreshFriends, FRIENDS_EVERY_MS);
  setInterval(() => {
    if (!seats.live) fetchMap(true).catch(() => {});
  }, MAP_POLL_MS);
}

// Read-only probes for tests and curious people.
window.tessera = {
  /** The state drawn for a seat on the overview canvas, read back from its pixels. */
  seatState(id) {
    const at = venue.index.get(id);
    if (at === undefined || overview === null || seats.bitmaps === null) return null;
    return overview.drawnState(venue.layout.offsets[at[0]] + at[1]);
  },
  /** Where the seat is drawn, in viewport CSS pixels: on the overview, or in the detail view
   *  (null when another section is shown there). */
  seatPoint(id, where = 'overview') {
    const at = venue.index.get(id);
    if (at === undefined || overview === null) return null;
    const inDetail = where === 'detail';
    if (inDetail && at[0] !== detail.index) return null;
    const [x, y] = inDetail
      ? detail.pointOf(at[1])
      : overview.pointOf(venue.layout.offsets[at[0]] + at[1]);
    const rect = (inDetail ? detail : overview).canvas.getBoundingClientRect();
    return { x: rect.left + x, y: rect.top + y };
  },
  get ready() {
    return mapDrawn;
  },
  get live() {
    return seats.live && seats.versions !== null;
  },
  get hold() {
    return fan.hold;
  },
  get draws() {
    return draws;
  },
};

start();
