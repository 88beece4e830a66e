// The waiting room's proof of work (edge/pow.py, docs/edge-waiting-room.md): find a `solution`
// such that SHA-256(challenge + ":" + solution) starts with at least `difficulty` zero bits.
// Solutions are decimal counters, as edge.pow.solve makes them.
//
// SHA-256 is written out here rather than taken from WebCrypto: crypto.subtle.digest is one
// promise per hash (a few hundred thousand a second at best), while the challenge's prefix is
// the same for every attempt, so its full 64-byte blocks are hashed once (the "midstate") and
// each attempt only hashes the last block or two. Pure functions, no DOM: pow-worker.mjs runs
// them off the page's thread.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/** One compression of the 64-byte block at `bytes[at..]` into `state` (8 words, in place). */
function compress(state, bytes, at, w) {
  for (let t = 0; t < 16; t++) {
    const i = at + 4 * t;
    w[t] = (bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3];
  }
  for (let t = 16; t < 64; t++) {
    const a = w[t - 15];
    const b = w[t - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
  }
  let [a, b, c, d, e, f, g, h] = state;
  for (let t = 0; t < 64; t++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/** Hashes `prefix + suffix` many times over for different suffixes: the prefix's whole blocks
 *  are compressed once. */
export class PrefixHasher {
  constructor(prefix) {
    const bytes = new TextEncoder().encode(prefix);
    this.length = bytes.length;
    this.whole = this.length - (this.length % 64);
    this.midstate = new Int32Array(INITIAL);
    this.w = new Int32Array(64);
    for (let at = 0; at < this.whole; at += 64) compress(this.midstate, bytes, at, this.w);
    this.rest = bytes.subarray(this.whole);
    this.tail = new Uint8Array(128);
    this.state = new Int32Array(8);
  }

  /** The digest of prefix + `suffix` (ASCII) as 8 words (valid until the next call). */
  words(suffix) {
    const { tail, rest } = this;
    if (rest.length + suffix.length + 9 > tail.length) throw new RangeError('suffix too long');
    tail.fill(0);
    tail.set(rest);
    let n = rest.length;
    for (let i = 0; i < suffix.length; i++) tail[n++] = suffix.charCodeAt(i);
    tail[n++] = 0x80;
    const blocks = n + 8 <= 64 ? 1 : 2; // suffixes are short counters: two blocks at most
    const bits = (this.length + suffix.length) * 8;
    const end = blocks * 64;
    tail[end - 4] = bits >>> 24;
    tail[end - 3] = bits >>> 16;
    tail[end - 2] = bits >>> 8;
    tail[end - 1] = bits;
    tail[end - 5] = Math.floor(bits / 2 ** 32);
    this.state.set(this.midstate);
    compress(this.state, tail, 0, this.w);
    if (blocks === 2) compress(this.state, tail, 64, this.w);
    return this.state;
  }
}

/** Leading zero bits of a digest given as 8 words. */
export function leadingZeroBits(words) {
  let bits = 0;
  for (const word of words) {
    if (word === 0) {
      bits += 32;
      continue;
    }
    return bits + Math.clz32(word);
  }
  return bits;
}

/** SHA-256 of a string (UTF-8), hex: for checking this implementation. */
export function sha256Hex(text) {
  const words = new PrefixHasher(text).words('');
  return Array.from(words, (w) => (w >>> 0).toString(16).padStart(8, '0')).join('');
}

/** The first decimal counter from `start` solving `challenge` at `difficulty` bits. Calls
 *  `progress(tried)` every `every` attempts; stops early (returning null) if it returns false. */
export function solve(challenge, difficulty, { start = 0, every = 65536, progress = null } = {}) {
  const hasher = new PrefixHasher(`${challenge}:`);
  for (let counter = start; ; counter++) {
    const solution = String(counter);
    if (leadingZeroBits(hasher.words(solution)) >= difficulty) return solution;
    const tried = counter - start + 1;
    if (progress !== null && tried % every === 0 && progress(tried) === false) return null;
  }
}
