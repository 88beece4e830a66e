// A decoder for the Tessera seat-map format (application/vnd.tessera.seatmap), specified in
// docs/seatmap-format.md. No dependencies; runs in browsers and Node >= 18.
//
// Strict like the reference decoder (core_rs/src/codec.rs): truncated, oversized, non-canonical
// or corrupted input throws SeatMapFormatError, and no buffer is sized from an unchecked length.
//
//   const map = await decodeSection(new Uint8Array(await response.arrayBuffer()));
//   const next = applyDelta(map, deltaBytes);               // a new map; `map` is untouched
//   const event = await decodeEvent(bytes, [500, 500, 1200]);
//
// u64 fields (versions, the version tag) are BigInt; counts and seat indices are Numbers.

export const MEDIA_TYPE = 'application/vnd.tessera.seatmap';

const FORMAT_VERSION = 1;
const KIND_SECTION = 1;
const KIND_EVENT = 2;
const KIND_DELTA = 3;
const FLAG_VERSIONS = 1;
const BODY_RAW = 0;
const BODY_RUNS = 1;
const BODY_DEFLATE_RAW = 2;
const BODY_DEFLATE_RUNS = 3;

export const SECTION_SEATS_MAX = 65_536;
export const EVENT_SECTIONS_MAX = 4_096;
export const EVENT_SEATS_MAX = 4_194_304;
export const SEATMAP_BYTES_MAX = 4 * 1024 * 1024;

const HEADER_BYTES = 5;
const CRC_BYTES = 4;
const U64_MASK = (1n << 64n) - 1n;

/** Bytes that are not a valid seat map / delta, or a delta built on another version.
 *  On a version mismatch `expected` (the delta's base) and `actual` (the map's version) are set:
 *  the section must be resynced from a snapshot. Otherwise both are null. */
export class SeatMapFormatError extends Error {
  constructor(message, mismatch = null) {
    super(message);
    this.name = 'SeatMapFormatError';
    this.expected = mismatch ? mismatch.expected : null;
    this.actual = mismatch ? mismatch.actual : null;
  }
}

const fail = (message) => {
  throw new SeatMapFormatError(message);
};

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let v = b; v; v >>= 1) n += v & 1;
  return n;
});

/** One section at one version. `bitmap`: bit i % 8 of byte i / 8 is seat i (1 = available). */
export class SectionMap {
  constructor(seatCount, version, bitmap) {
    this.seatCount = seatCount;
    this.version = version;
    this.bitmap = bitmap;
    Object.freeze(this);
  }

  isAvailable(seat) {
    if (!Number.isInteger(seat) || seat < 0 || seat >= this.seatCount) {
      throw new RangeError(`seat ${seat} out of range 0..${this.seatCount - 1}`);
    }
    return ((this.bitmap[seat >> 3] >> (seat & 7)) & 1) === 1;
  }

  get availableCount() {
    let count = 0;
    for (const byte of this.bitmap) count += POPCOUNT[byte];
    return count;
  }

  availableIndices() {
    const seats = [];
    for (let seat = 0; seat < this.seatCount; seat++) {
      if ((this.bitmap[seat >> 3] >> (seat & 7)) & 1) seats.push(seat);
    }
    return seats;
  }
}

let crcTable = null;

function crc32(bytes) {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of bytes) crc = crcTable[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** A cursor that throws instead of reading past the end. */
class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.at = 0;
  }

  get remaining() {
    return this.bytes.length - this.at;
  }

  u8(what) {
    if (this.at >= this.bytes.length) fail(`truncated before ${what}`);
    return this.bytes[this.at++];
  }

  take(count, what) {
    if (count > this.remaining) fail(`truncated in ${what}`);
    this.at += count;
    return this.bytes.subarray(this.at - count, this.at);
  }

  rest() {
    return this.take(this.remaining, 'body');
  }

  u32(what) {
    const b = this.take(4, what);
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }

  u64(what) {
    const b = this.take(8, what);
    let value = 0n;
    for (let i = 7; i >= 0; i--) value = (value << 8n) | BigInt(b[i]);
    return value;
  }

  // Canonical LEB128 (one encoding per value). Returns a Number while the value has at most
  // 7 groups (49 bits, exact in a double), a BigInt beyond: run lengths stay on the fast path.
  varint(what) {
    let small = 0;
    let big = 0n;
    for (let index = 0; index < 10; index++) {
      const byte = this.u8(what);
      const payload = byte & 0x7f;
      // The tenth byte carries bit 63 only; anything more does not fit in 64 bits.
      if (index === 9 && payload > 1) fail(`${what} overflows 64 bits`);
      if (index < 7) small += payload * 2 ** (7 * index);
      else big |= BigInt(payload) << BigInt(7 * index);
      if ((byte & 0x80) === 0) {
        if (index > 0 && byte === 0) fail(`${what} is not minimally encoded`);
        return index < 7 ? small : big | BigInt(small);
      }
    }
    return fail(`${what} is longer than 10 bytes`);
  }

  u64varint(what) {
    return BigInt(this.varint(what));
  }

  bounded(max, what) {
    const value = this.varint(what);
    if (typeof value === 'bigint' || value > max) fail(`${what} ${value} exceeds ${max}`);
    return value;
  }
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError('expected a Uint8Array, ArrayBuffer or typed-array view');
}

// Size, magic, format version, CRC, kind, flags; a reader over the bytes between the fixed
// header and the CRC. The CRC is checked before any field is trusted.
function open(data, kind) {
  if (data.length > SEATMAP_BYTES_MAX) {
    fail(`${data.length} bytes exceeds the ${SEATMAP_BYTES_MAX}-byte limit`);
  }
  if (data.length < HEADER_BYTES + CRC_BYTES) fail('shorter than a header');
  if (data[0] !== 0x54 || data[1] !== 0x53) fail('not a Tessera seat map (bad magic)');
  if (data[2] !== FORMAT_VERSION) fail(`unsupported format version ${data[2]}`);
  const framed = data.subarray(0, data.length - CRC_BYTES);
  const crc = new Reader(data.subarray(data.length - CRC_BYTES)).u32('checksum');
  if (crc32(framed) !== crc) fail('checksum mismatch (corrupted or truncated)');
  if (data[3] !== kind) fail(`expected kind ${kind}, got ${data[3]}`);
  const allowed = kind === KIND_EVENT ? FLAG_VERSIONS : 0;
  if (data[4] & ~allowed) fail(`unknown flags 0x${data[4].toString(16)}`);
  const reader = new Reader(framed);
  reader.take(HEADER_BYTES, 'header');
  return reader;
}

// --- inflate: DecompressionStream('deflate-raw'), bounded by the declared size ---

function deflateRawStream() {
  try {
    return new DecompressionStream('deflate-raw');
  } catch {
    return null; // no DecompressionStream, or one without 'deflate-raw' (Node < 20.12)
  }
}

// Inflates `stream`, reading chunk by chunk and giving up as soon as the output passes `max`
// bytes (a small deflate stream can expand about 1000-fold).
async function inflateWith(decompressor, stream, max) {
  const writer = decompressor.writable.getWriter();
  // Errors surface on the readable side; these promises must not become unhandled rejections.
  writer.write(stream).catch(() => {});
  writer.close().catch(() => {});
  const reader = decompressor.readable.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    let step;
    try {
      step = await reader.read();
    } catch {
      return fail('deflate stream is corrupt or truncated');
    }
    if (step.done) break;
    size += step.value.length;
    if (size > max) {
      reader.cancel().catch(() => {});
      return fail('deflate stream longer than declared');
    }
    chunks.push(step.value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

// The Compression Streams spec rejects bytes after the end of the deflate stream, but some
// runtimes (Node 20) ignore them. Probe once: an empty final block followed by one junk byte.
let junkProbe = null;

function runtimeRejectsTrailingBytes() {
  junkProbe ??= inflateWith(deflateRawStream(), new Uint8Array([0x03, 0x00, 0x00]), 1).then(
    () => false,
    () => true,
  );
  return junkProbe;
}

async function inflateWithNodeZlib(stream, max) {
  if (!globalThis.process?.versions?.node) {
    throw new Error("this runtime has no DecompressionStream('deflate-raw')");
  }
  const zlibModule = 'node:zlib';
  const zlib = await import(/* webpackIgnore: true */ /* @vite-ignore */ zlibModule);
  let result;
  try {
    result = zlib.inflateRawSync(stream, { info: true, maxOutputLength: max + 1 });
  } catch (error) {
    if (error?.code === 'ERR_BUFFER_TOO_LARGE') fail('deflate stream longer than declared');
    return fail('deflate stream is corrupt or truncated');
  }
  if (result.engine.bytesWritten !== stream.length) {
    fail('bytes after the end of the deflate stream');
  }
  return new Uint8Array(result.buffer.buffer, result.buffer.byteOffset, result.buffer.length);
}

async function inflateBounded(stream, max) {
  const decompressor = deflateRawStream();
  if (decompressor === null) return inflateWithNodeZlib(stream, max);
  const out = await inflateWith(decompressor, stream, max);
  if (stream.length > 0 && !(await runtimeRejectsTrailingBytes())) {
    // A deflate stream's last byte holds bits of its final block, so without trailing bytes the
    // stream minus its last byte is incomplete and fails; with trailing bytes it still inflates.
    const shorter = await inflateWith(deflateRawStream(), stream.subarray(0, -1), max).then(
      () => true,
      () => false,
    );
    if (shorter) fail('bytes after the end of the deflate stream');
  }
  return out;
}

async function inflate(reader, limit) {
  const expected = reader.bounded(limit, 'inflated size');
  const out = await inflateBounded(reader.rest(), expected);
  if (out.length !== expected) fail('deflate stream shorter than declared');
  return out;
}

// --- bodies ---

function rawBody(body, seatCount) {
  if (body.length !== Math.ceil(seatCount / 8)) {
    fail(`raw body has ${body.length} bytes for ${seatCount} seats`);
  }
  // Padding must be 0 so that each map has exactly one raw encoding.
  if (seatCount % 8 && body[body.length - 1] >> seatCount % 8) {
    fail('padding bits past the last seat are set');
  }
  return new Uint8Array(body); // a copy (Buffer#slice would not copy): no aliasing the input
}

function setRange(bitmap, start, end) {
  const first = start >> 3;
  const last = (end - 1) >> 3;
  if (first === last) {
    bitmap[first] |= ((1 << (end - start)) - 1) << (start & 7);
    return;
  }
  bitmap[first] |= (0xff << (start & 7)) & 0xff;
  bitmap.fill(0xff, first + 1, last);
  bitmap[last] |= 0xff >> (7 - ((end - 1) & 7));
}

// Alternating run lengths, unavailable first; only the first run may be empty, and each run is
// bounded by the seats left, so they cover the seats exactly or the input is rejected.
function runsBody(body, seatCount) {
  const bitmap = new Uint8Array(Math.ceil(seatCount / 8));
  const reader = new Reader(body);
  let at = 0;
  let available = false;
  let first = true;
  while (at < seatCount || first) {
    const run = reader.bounded(seatCount - at, 'run length');
    if (run === 0 && !first) fail('empty run after the first');
    if (available && run) setRange(bitmap, at, at + run);
    at += run;
    available = !available;
    first = false;
  }
  if (reader.remaining) fail('bytes after the last run');
  return bitmap;
}

// Bytes in the LEB128 encoding of `value` (< 2**32).
const varintLen = (value) => Math.max(1, Math.ceil((32 - Math.clz32(value)) / 7));

async function readBody(reader, seatCount) {
  const tag = reader.u8('body encoding');
  switch (tag) {
    case BODY_RAW:
      return rawBody(reader.rest(), seatCount);
    case BODY_RUNS:
      return runsBody(reader.rest(), seatCount);
    case BODY_DEFLATE_RAW:
      return rawBody(await inflate(reader, Math.ceil(seatCount / 8)), seatCount);
    case BODY_DEFLATE_RUNS:
      // The reference decoder's bound: seatCount varints of the longest length a run can have.
      return runsBody(await inflate(reader, seatCount * varintLen(seatCount)), seatCount);
    default:
      return fail(`unknown body encoding ${tag}`);
  }
}

// --- public API ---

/** Decode a section map (kind 1): resolves to a SectionMap. */
export async function decodeSection(data) {
  const reader = open(asBytes(data), KIND_SECTION);
  const seatCount = reader.bounded(SECTION_SEATS_MAX, 'seat count');
  if (seatCount === 0) fail('seat count is zero');
  const version = reader.u64varint('version');
  return new SectionMap(seatCount, version, await readBody(reader, seatCount));
}

/** CRC-32 of the seat counts as u32 LE. */
export function layoutHash(seatCounts) {
  const bytes = new Uint8Array(4 * seatCounts.length);
  const view = new DataView(bytes.buffer);
  seatCounts.forEach((count, i) => view.setUint32(4 * i, count, true));
  return crc32(bytes);
}

/** FNV-1a 64 of the versions (BigInt or safe-integer Numbers) as u64 LE, as a BigInt. */
export function versionTag(versions) {
  let hash = 0xcbf29ce484222325n;
  for (const version of versions) {
    let value = BigInt(version);
    if (value < 0n || value > U64_MASK) fail(`version ${value} does not fit in 64 bits`);
    for (let i = 0; i < 8; i++, value >>= 8n) {
      hash = ((hash ^ (value & 0xffn)) * 0x100000001b3n) & U64_MASK;
    }
  }
  return hash;
}

function checkLayout(seatCounts) {
  // No encodable map has another layout, so a bad one is rejected before any byte is read.
  if (seatCounts.length < 1 || seatCounts.length > EVENT_SECTIONS_MAX) {
    fail(`a venue layout has 1 to ${EVENT_SECTIONS_MAX} sections`);
  }
  let total = 0;
  for (const count of seatCounts) {
    if (!Number.isInteger(count) || count < 1 || count > SECTION_SEATS_MAX) {
      fail(`a section has 1 to ${SECTION_SEATS_MAX} seats`);
    }
    total += count;
  }
  if (total > EVENT_SEATS_MAX) fail(`a venue layout has at most ${EVENT_SEATS_MAX} seats`);
  return total;
}

// `count` bits of `src` starting at bit `offset`, as a fresh bitmap (sections start at any bit).
function extractBits(src, offset, count) {
  const out = new Uint8Array(Math.ceil(count / 8));
  const base = offset >> 3;
  const shift = offset & 7;
  for (let i = 0; i < out.length; i++) {
    const low = src[base + i] >> shift;
    const high = shift && base + i + 1 < src.length ? src[base + i + 1] << (8 - shift) : 0;
    out[i] = (low | high) & 0xff;
  }
  if (count % 8) out[out.length - 1] &= (1 << count % 8) - 1;
  return out;
}

/** Decode an event map (kind 2) for a venue whose sections have `seatCounts` seats, in order.
 *  Resolves to { versionTag, versions (BigInt[] or null), sections (SectionMap[]) }; without
 *  versions in the map every section's version is 0n. */
export async function decodeEvent(data, seatCounts) {
  const counts = Array.from(seatCounts);
  const expectedTotal = checkLayout(counts);
  const bytes = asBytes(data);
  const reader = open(bytes, KIND_EVENT);
  const sections = reader.bounded(EVENT_SECTIONS_MAX, 'section count');
  const total = reader.bounded(EVENT_SEATS_MAX, 'seat count');
  const hash = reader.u32('layout hash');
  if (sections !== counts.length || total !== expectedTotal || hash !== layoutHash(counts)) {
    fail('the map was made for another venue layout');
  }
  const tag = reader.u64('version tag');
  let versions = null;
  if (bytes[4] & FLAG_VERSIONS) {
    versions = counts.map(() => reader.u64varint('section version'));
    if (versionTag(versions) !== tag) fail('version vector does not match its tag');
  }
  const all = await readBody(reader, total);
  let offset = 0;
  const maps = counts.map((count, i) => {
    const map = new SectionMap(count, versions ? versions[i] : 0n, extractBits(all, offset, count));
    offset += count;
    return map;
  });
  return { versionTag: tag, versions, sections: maps };
}

/** The map after `delta` (kind 3), as a new SectionMap; `map` is never modified. Throws
 *  SeatMapFormatError with `expected`/`actual` set when the delta is for another base version. */
export function applyDelta(map, delta) {
  const reader = open(asBytes(delta), KIND_DELTA);
  const seatCount = reader.bounded(SECTION_SEATS_MAX, 'seat count');
  if (seatCount !== map.seatCount) {
    fail(`delta is for ${seatCount} seats, the map has ${map.seatCount}`);
  }
  const from = reader.u64varint('from version');
  const to = reader.u64varint('to version');
  if (to <= from) fail(`delta goes from version ${from} to ${to}`);
  const actual = BigInt(map.version);
  if (from !== actual) {
    throw new SeatMapFormatError(
      `delta applies on top of version ${from} but the map is at version ${actual}`,
      { expected: from, actual },
    );
  }
  const availableAfter = reader.bounded(seatCount, 'available count');
  const changes = reader.bounded(seatCount, 'change count');
  const bitmap = Uint8Array.from(map.bitmap);
  let seat = -1;
  for (let i = 0; i < changes; i++) {
    // Gap-coded: each changed seat is (previous + 1) + gap, so seats strictly increase.
    seat += 1 + reader.bounded(seatCount, 'seat gap');
    if (seat >= seatCount) fail(`changed seat ${seat} out of range`);
    bitmap[seat >> 3] ^= 1 << (seat & 7);
  }
  if (reader.remaining) fail('bytes after the last change');
  const updated = new SectionMap(seatCount, to, bitmap);
  // A cheap end-to-end check that the base bits were the ones the delta was made from.
  if (updated.availableCount !== availableAfter) {
    fail('available count after the delta does not match');
  }
  return updated;
}
