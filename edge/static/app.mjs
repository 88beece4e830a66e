// The seat-map page (docs/web-page.md), served by the edge at /events/{event_id}. Plain ES
// modules, no framework, no build. It only uses the edge's public fan API:
//
//   GET  /v1/events/{id}                     the venue: sections, rows, seat ids (edge-cached)
//   GET  /v1/events/{id}/seatmap             the binary seat map (seatmap.mjs decodes it)
//   GET  /v1/events/{id}/seatmap/stream      SSE: a snapshot, then deltas (docs/regional.md)
//   POST /v1/dev/token                       a fan token (local stacks only)
//   POST /v1/events/{id}/queue, GET /v1/queue/{ticket}     the waiting room
//   POST /v1/events/{id}/holds, DELETE /v1/events/{id}/holds/{hold}, POST /v1/events/{id}/orders
//   GET  /v1/events/{id}/friends, GET /v1/me, PUT /v1/me/sharing, PUT /v1/me/friends/{id}
//
// window.tessera exposes a few read-only probes for tests (seatState reads the drawn pixel).

import { decodeEvent } from './seatmap.mjs';
import { Detail, LABELS, Overview, PALETTE, layoutVenue } from './view.mjs';

const EVENT_ID = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const FRIENDS_EVERY_MS = 5000;
const FRIENDS_SOON_AFTER_MS = 500;
const FRIENDS_SOON_EVERY_MS = 2000;
const MAP_POLL_MS = 2000; // only while the stream is down
const HOLD_SEATS_MAX = 10;
const RETRYABLE = new Set([0, 502, 503, 504]); // no answer: retry with the same Idempotency-Key

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
const fan = {
  user: null,
  token: null,
  ticket: null,
  poll: null, // the timer of the next queue poll
  admission: null,
  hold: null,
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
    detail.draw(stateOf);
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

async function join() {
  try {
    const joined = await api('POST', `/v1/events/${EVENT_ID}/queue`, { auth: true });
    fan.ticket = joined.ticket;
    onTicket(joined);
  } catch (error) {
    say('queue-status', problem(error), true);
  }
}

function onTicket(status) {
  clearTimeout(fan.poll);
  if (status.state === 'admitted') {
    fan.admission = status.admission_token;
    say('queue-status', 'Admitted: you can hold seats.');
    updateButtons();
    return;
  }
  const place =
    status.position === null
      ? 'your place is drawn when the queue opens'
      : `position ${status.position}`;
  const eta = status.eta_s === null ? '' : `, about ${Math.ceil(status.eta_s)} s to go`;
  say('queue-status', `Waiting: ${place}${eta}.`);
  const wait = Math.min(5, Math.max(1, status.eta_s ?? 2));
  fan.poll = setTimeout(pollTicket, wait * 1000);
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

function writeFailed(error, where) {
  say(where, problem(error), true);
  if (error.code === 'admission_required') {
    fan.admission = null;
    say('queue-status', 'Your admission is no longer valid: join the queue again.', true);
    updateButtons();
  }
}

async function hold(body) {
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
  say('hold', `Holding ${inOrder(data.seats).join(', ')}.`);
  tick();
  updateButtons();
  redraw();
}

function clearHold() {
  if (fan.hold) for (const id of fan.hold.seats) marks.held.delete(id);
  fan.hold = null;
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
    return;
  }
  const s = Math.floor(left / 1000);
  say('countdown', `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')} left to buy`);
}

function money(amount, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(amount / 100);
  } catch {
    return `${amount} ${currency}`;
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
    const what = `${inOrder(order.seats).join(', ')} for ${money(order.amount, order.currency)}`;
    say('result', `Bought ${what} (order ${order.order_id}).`);
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
  $('release').disabled = fan.hold === null;
  $('share').disabled = fan.token === null;
  $('add-friend-button').disabled = fan.token === null;
  const selected = inOrder(marks.selected).join(', ');
  say('selection', selected ? `Selected: ${selected}` : 'Click seats to select them.');
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

// --- clicking ----------------------------------------------------------------------------------

function showSection(index) {
  overview.highlight = index;
  detail.show(venue.sections[index], index);
  say('section-name', `Section ${venue.sections[index].name}`);
  redraw();
}

function onOverviewClick(event) {
  const rect = overview.canvas.getBoundingClientRect();
  const index = overview.sectionAt(event.clientX - rect.left, event.clientY - rect.top);
  if (index !== null) showSection(index);
}

function onDetailClick(event) {
  const rect = detail.canvas.getBoundingClientRect();
  const i = detail.seatAt(event.clientX - rect.left, event.clientY - rect.top);
  if (i === null) return;
  const s = detail.index;
  const id = venue.ids[s][i];
  if (marks.selected.has(id)) marks.selected.delete(id);
  else if (isAvailable(s, i) && marks.selected.size < HOLD_SEATS_MAX) marks.selected.add(id);
  updateButtons();
  redraw();
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
  venue.sections = event.sections;
  venue.ids = event.sections.map((section) => section.rows.flatMap((row) => row.seats));
  venue.ids.forEach((ids, s) => ids.forEach((id, i) => venue.index.set(id, [s, i])));
  event.sections.forEach((section, s) => venue.position.set(section.section_id, s));
  venue.layout = layoutVenue(event.sections);
  overview = new Overview($('overview'), venue.layout, venue.sections);
  detail = new Detail($('detail'));
  overview.resize();
  showSection(0);
  $('overview').addEventListener('click', onOverviewClick);
  $('detail').addEventListener('click', onDetailClick);
  window.addEventListener('resize', () => {
    overview.resize();
    detail.show(detail.section, detail.index);
    redraw();
  });
  $('signin').addEventListener('submit', signIn);
  $('join').addEventListener('click', join);
  $('best').addEventListener('click', () =>
    hold({ best_available: { quantity: Number($('quantity').value), adjacent: true } }),
  );
  $('hold-selected').addEventListener('click', () => hold({ seats: [...marks.selected] }));
  $('buy').addEventListener('click', buy);
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
