//! The compact binary seat-map format (`application/vnd.tessera.seatmap`), specified in
//! `docs/seatmap-format.md`: one bit per seat (1 = available), in the smallest of four bodies
//! (raw bitmap, run lengths, or either deflated), framed by a header and a CRC-32.
//!
//! The decoder is strict: any truncated, oversized, non-canonical or corrupted input is a
//! `CoreError::Decode`, and no allocation is sized from an unchecked field.

use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::bits;
use crate::error::{decode_err, invalid, CoreError, CoreResult};
use crate::limits::{EVENT_SEATS_MAX, EVENT_SECTIONS_MAX, SEATMAP_BYTES_MAX, SECTION_SEATS_MAX};
use crate::runtree::next_with_value;
use crate::section::Section;
use crate::wire::{crc32, fnv1a64, put_varint, varint_len, Reader};

pub const MAGIC: [u8; 2] = *b"TS";
pub const FORMAT_VERSION: u8 = 1;
pub const KIND_SECTION: u8 = 1;
pub const KIND_EVENT: u8 = 2;
pub const KIND_DELTA: u8 = 3;
/// Event maps: the per-section version vector follows the header.
pub const FLAG_VERSIONS: u8 = 1;

pub const BODY_RAW: u8 = 0;
pub const BODY_RUNS: u8 = 1;
pub const BODY_DEFLATE_RAW: u8 = 2;
pub const BODY_DEFLATE_RUNS: u8 = 3;

/// Measured on seat maps (core_rs/examples/probe.rs): level 1 is ~1.7x faster than 3 or 6 and
/// within 1% of their size, because bitmaps have few long matches to find.
const DEFLATE_LEVEL: u8 = 1;
/// Bodies this small cannot shrink by more than deflate's own framing.
const DEFLATE_INPUT_MIN_BYTES: usize = 16;
const CRC_BYTES: usize = 4;

/// One section's public availability at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatMap {
    seat_count: usize,
    version: u64,
    bits: Vec<u64>,
}

impl SeatMap {
    /// `bits` holds one bit per seat (bit `i` of word `i / 64`); bits past `seat_count` are ignored.
    pub fn new(seat_count: usize, version: u64, mut bits: Vec<u64>) -> CoreResult<SeatMap> {
        if seat_count == 0 || seat_count > SECTION_SEATS_MAX {
            return invalid(format!("a section map has 1 to {SECTION_SEATS_MAX} seats"));
        }
        if bits.len() != bits::words_for(seat_count) {
            return invalid(format!(
                "{} words given for {seat_count} seats; expected {}",
                bits.len(),
                bits::words_for(seat_count)
            ));
        }
        bits::clear_tail(&mut bits, seat_count);
        Ok(SeatMap {
            seat_count,
            version,
            bits,
        })
    }

    pub fn all_available(seat_count: usize, version: u64) -> CoreResult<SeatMap> {
        let mut map = SeatMap::new(seat_count, version, vec![0; bits::words_for(seat_count)])?;
        bits::set_range(&mut map.bits, 0, seat_count);
        Ok(map)
    }

    pub fn of_section(section: &Section) -> SeatMap {
        SeatMap {
            seat_count: section.seat_count(),
            version: section.version(),
            bits: section.available_bits().to_vec(),
        }
    }

    pub fn seat_count(&self) -> usize {
        self.seat_count
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn bits(&self) -> &[u64] {
        &self.bits
    }

    pub fn is_available(&self, seat: usize) -> CoreResult<bool> {
        if seat >= self.seat_count {
            return Err(CoreError::InvalidSeat {
                seats: vec![seat as u32],
                reason: "seat index out of range",
            });
        }
        Ok(bits::get(&self.bits, seat))
    }

    pub fn available_count(&self) -> usize {
        bits::count_ones(&self.bits)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = header(KIND_SECTION, 0);
        put_varint(&mut out, self.seat_count as u64);
        put_varint(&mut out, self.version);
        put_body(&mut out, &self.bits, self.seat_count);
        seal(out)
    }

    pub fn decode(data: &[u8]) -> CoreResult<SeatMap> {
        let mut reader = open(data, KIND_SECTION)?;
        let seat_count = reader.bounded(SECTION_SEATS_MAX as u64, "seat count")? as usize;
        if seat_count == 0 {
            return decode_err("seat count is zero");
        }
        let version = reader.varint("version")?;
        let bits = read_body(&mut reader, seat_count)?;
        Ok(SeatMap {
            seat_count,
            version,
            bits,
        })
    }

    /// The delta that turns `self` into `newer`: the seats whose availability flipped.
    pub fn delta_to(&self, newer: &SeatMap) -> CoreResult<Vec<u8>> {
        if newer.seat_count != self.seat_count {
            return invalid("maps of different sections: seat counts differ");
        }
        if newer.version <= self.version {
            return invalid(format!(
                "a delta goes forward: version {} is not after {}",
                newer.version, self.version
            ));
        }
        let changed: Vec<u64> = self.bits.iter().zip(&newer.bits).map(|(a, b)| a ^ b).collect();
        let mut out = header(KIND_DELTA, 0);
        for value in [
            self.seat_count as u64,
            self.version,
            newer.version,
            newer.available_count() as u64,
        ] {
            put_varint(&mut out, value);
        }
        put_varint(&mut out, bits::count_ones(&changed) as u64);
        let mut previous: Option<usize> = None;
        let mut at = 0;
        while let Some(seat) = next_with_value(&changed, at, self.seat_count, true) {
            put_varint(&mut out, (seat - previous.map_or(0, |p| p + 1)) as u64);
            previous = Some(seat);
            at = seat + 1;
        }
        Ok(seal(out))
    }

    /// Apply a delta made by `delta_to`. All or nothing: on any error the map is unchanged.
    pub fn apply_delta(&mut self, data: &[u8]) -> CoreResult<()> {
        let mut reader = open(data, KIND_DELTA)?;
        let seat_count = reader.bounded(SECTION_SEATS_MAX as u64, "seat count")? as usize;
        if seat_count != self.seat_count {
            return decode_err(format!(
                "delta is for {seat_count} seats, the map has {}",
                self.seat_count
            ));
        }
        let from = reader.varint("from version")?;
        let to = reader.varint("to version")?;
        if to <= from {
            return decode_err(format!("delta goes from version {from} to {to}"));
        }
        if from != self.version {
            return Err(CoreError::VersionMismatch {
                expected: from,
                actual: self.version,
            });
        }
        let available_after = reader.bounded(seat_count as u64, "available count")? as usize;
        let changes = reader.bounded(seat_count as u64, "change count")? as usize;
        let mut flips = Vec::with_capacity(changes.min(reader.remaining()));
        let mut next = 0usize;
        for _ in 0..changes {
            let gap = reader.bounded(seat_count as u64, "seat gap")? as usize;
            let seat = next + gap;
            if seat >= seat_count {
                return decode_err(format!("changed seat {seat} out of range"));
            }
            flips.push(seat);
            next = seat + 1;
        }
        if reader.remaining() != 0 {
            return decode_err("bytes after the last change");
        }
        let mut updated = self.bits.clone();
        flips.iter().for_each(|&seat| bits::flip(&mut updated, seat));
        if bits::count_ones(&updated) != available_after {
            return decode_err("available count after the delta does not match");
        }
        self.bits = updated;
        self.version = to;
        Ok(())
    }
}

/// A whole event's availability: every section's bits concatenated in section order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    pub version_tag: u64,
    pub versions: Option<Vec<u64>>,
    pub maps: Vec<SeatMap>,
}

/// Identifies the version vector in 8 bytes (FNV-1a 64 of the versions as u64 LE).
pub fn version_tag(versions: impl Iterator<Item = u64>) -> u64 {
    let bytes: Vec<u8> = versions.flat_map(u64::to_le_bytes).collect();
    fnv1a64(&bytes)
}

/// Identifies the section sizes so a client with another layout fails loudly.
pub fn layout_hash(seat_counts: impl Iterator<Item = usize>) -> u32 {
    let bytes: Vec<u8> = seat_counts.flat_map(|n| (n as u32).to_le_bytes()).collect();
    crc32(&bytes)
}

/// `sections`: `(bits, seat_count, version)` per section, in section order.
pub fn encode_event(sections: &[(&[u64], usize, u64)], include_versions: bool) -> CoreResult<Vec<u8>> {
    if sections.is_empty() || sections.len() > EVENT_SECTIONS_MAX {
        return invalid(format!("an event map has 1 to {EVENT_SECTIONS_MAX} sections"));
    }
    let total: usize = sections.iter().map(|s| s.1).sum();
    if total > EVENT_SEATS_MAX {
        return invalid(format!("an event map has at most {EVENT_SEATS_MAX} seats"));
    }
    let mut all = vec![0u64; bits::words_for(total)];
    let mut offset = 0;
    for &(section_bits, seat_count, _) in sections {
        if section_bits.len() < bits::words_for(seat_count) {
            return invalid("a section's bitmap is shorter than its seat count");
        }
        bits::append(&mut all, offset, section_bits, seat_count);
        offset += seat_count;
    }
    let mut out = header(KIND_EVENT, if include_versions { FLAG_VERSIONS } else { 0 });
    put_varint(&mut out, sections.len() as u64);
    put_varint(&mut out, total as u64);
    out.extend_from_slice(&layout_hash(sections.iter().map(|s| s.1)).to_le_bytes());
    out.extend_from_slice(&version_tag(sections.iter().map(|s| s.2)).to_le_bytes());
    if include_versions {
        sections.iter().for_each(|s| put_varint(&mut out, s.2));
    }
    put_body(&mut out, &all, total);
    Ok(seal(out))
}

/// Decode an event map for a venue whose sections have `seat_counts` seats.
pub fn decode_event(data: &[u8], seat_counts: &[usize]) -> CoreResult<DecodedEvent> {
    check_layout(seat_counts)?;
    let mut reader = open(data, KIND_EVENT)?;
    let sections = reader.bounded(EVENT_SECTIONS_MAX as u64, "section count")? as usize;
    let total = reader.bounded(EVENT_SEATS_MAX as u64, "seat count")? as usize;
    let hash = reader.u32_le("layout hash")?;
    if sections != seat_counts.len()
        || total != seat_counts.iter().sum::<usize>()
        || hash != layout_hash(seat_counts.iter().copied())
    {
        return decode_err("the map was made for another venue layout");
    }
    let version_tag = reader.u64_le("version tag")?;
    let versions = if flags_of(data) & FLAG_VERSIONS != 0 {
        let versions = (0..sections)
            .map(|_| reader.varint("section version"))
            .collect::<CoreResult<Vec<u64>>>()?;
        if self::version_tag(versions.iter().copied()) != version_tag {
            return decode_err("version vector does not match its tag");
        }
        Some(versions)
    } else {
        None
    };
    let all = read_body(&mut reader, total)?;
    let mut maps = Vec::with_capacity(sections);
    let mut offset = 0;
    for (index, &seat_count) in seat_counts.iter().enumerate() {
        let version = versions.as_ref().map_or(0, |v| v[index]);
        maps.push(SeatMap::new(
            seat_count,
            version,
            bits::extract(&all, offset, seat_count),
        )?);
        offset += seat_count;
    }
    Ok(DecodedEvent {
        version_tag,
        versions,
        maps,
    })
}

/// The caller's venue layout, checked before it sizes anything.
fn check_layout(seat_counts: &[usize]) -> CoreResult<()> {
    if seat_counts.is_empty() || seat_counts.len() > EVENT_SECTIONS_MAX {
        return invalid(format!("a venue layout has 1 to {EVENT_SECTIONS_MAX} sections"));
    }
    if let Some(bad) = seat_counts.iter().find(|&&n| n == 0 || n > SECTION_SEATS_MAX) {
        return invalid(format!("a section has 1 to {SECTION_SEATS_MAX} seats, got {bad}"));
    }
    // Cannot overflow: at most EVENT_SECTIONS_MAX terms of at most SECTION_SEATS_MAX each.
    if seat_counts.iter().sum::<usize>() > EVENT_SEATS_MAX {
        return invalid(format!("a venue layout has at most {EVENT_SEATS_MAX} seats"));
    }
    Ok(())
}

fn header(kind: u8, flags: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[FORMAT_VERSION, kind, flags]);
    out
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn flags_of(data: &[u8]) -> u8 {
    data.get(4).copied().unwrap_or(0)
}

/// Check size, CRC, magic, format version and kind; return a reader past the fixed header,
/// limited to the bytes before the CRC.
fn open(data: &[u8], kind: u8) -> CoreResult<Reader<'_>> {
    if data.len() > SEATMAP_BYTES_MAX {
        return decode_err(format!(
            "{} bytes exceeds the {SEATMAP_BYTES_MAX}-byte limit",
            data.len()
        ));
    }
    if data.len() < MAGIC.len() + 3 + CRC_BYTES {
        return decode_err("shorter than a header");
    }
    let (framed, crc) = data.split_at(data.len() - CRC_BYTES);
    if data[..2] != MAGIC {
        return decode_err("not a Tessera seat map (bad magic)");
    }
    if data[2] != FORMAT_VERSION {
        return decode_err(format!("unsupported format version {}", data[2]));
    }
    if crc32(framed).to_le_bytes() != crc {
        return decode_err("checksum mismatch (corrupted or truncated)");
    }
    if data[3] != kind {
        return decode_err(format!("expected kind {kind}, got {}", data[3]));
    }
    let allowed = if kind == KIND_EVENT { FLAG_VERSIONS } else { 0 };
    if data[4] & !allowed != 0 {
        return decode_err(format!("unknown flags {:#04x}", data[4]));
    }
    let mut reader = Reader::new(framed);
    reader.bytes(5, "header")?;
    Ok(reader)
}

fn raw_bytes(words: &[u64], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 8);
    words.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
    out.truncate(len.div_ceil(8));
    out
}

/// Alternating run lengths, starting with a run of unavailable seats (possibly empty); `None` as
/// soon as they would take `cap` bytes or more (the raw bitmap is then smaller anyway).
fn run_bytes(words: &[u64], len: usize, cap: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut value = false;
    while at < len {
        let end = next_with_value(words, at, len, !value).unwrap_or(len);
        put_varint(&mut out, (end - at) as u64);
        if out.len() >= cap {
            return None;
        }
        at = end;
        value = !value;
    }
    if out.is_empty() {
        put_varint(&mut out, 0);
    }
    Some(out)
}

/// Append the smallest body: ties go to the simpler encoding. Deflate is tried only on the
/// smaller of raw and runs, which is where it can win.
fn put_body(out: &mut Vec<u8>, words: &[u64], len: usize) {
    let (mut tag, mut body) = match run_bytes(words, len, len.div_ceil(8)) {
        Some(runs) => (BODY_RUNS, runs),
        None => (BODY_RAW, raw_bytes(words, len)),
    };
    if body.len() < DEFLATE_INPUT_MIN_BYTES {
        out.push(tag);
        out.extend_from_slice(&body);
        return;
    }
    let deflated = compress_to_vec(&body, DEFLATE_LEVEL);
    if deflated.len() + varint_len(body.len() as u64) < body.len() {
        tag = if tag == BODY_RUNS {
            BODY_DEFLATE_RUNS
        } else {
            BODY_DEFLATE_RAW
        };
        let mut framed = Vec::with_capacity(deflated.len() + 4);
        put_varint(&mut framed, body.len() as u64);
        framed.extend_from_slice(&deflated);
        body = framed;
    }
    out.push(tag);
    out.extend_from_slice(&body);
}

fn read_body(reader: &mut Reader<'_>, len: usize) -> CoreResult<Vec<u64>> {
    let tag = reader.u8("body encoding")?;
    let raw_len = len.div_ceil(8);
    // Each run is at most `len`, so its varint is at most `varint_len(len)` bytes, and a runs body
    // the encoder deflates is never longer than the raw bitmap, so this bounds every body it makes
    // (a contrived body of `len` one-seat runs after an empty first one would need one more byte).
    let runs_len_max = len * varint_len(len as u64);
    match tag {
        BODY_RAW => raw_body(reader.rest(), len),
        BODY_RUNS => runs_body(reader.rest(), len),
        BODY_DEFLATE_RAW => raw_body(&inflate(reader, raw_len)?, len),
        BODY_DEFLATE_RUNS => runs_body(&inflate(reader, runs_len_max)?, len),
        other => decode_err(format!("unknown body encoding {other}")),
    }
}

/// Inflate exactly the declared size from exactly the remaining bytes: a stream that ends early,
/// runs long, or is followed by stray bytes is rejected (strictness the CRC alone cannot give,
/// since a forger can recompute it).
fn inflate(reader: &mut Reader<'_>, limit: usize) -> CoreResult<Vec<u8>> {
    let expected = reader.bounded(limit as u64, "inflated size")? as usize;
    let input = reader.rest();
    let mut output = vec![0u8; expected];
    let mut state = Box::<DecompressorOxide>::default();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, read, written) = decompress(&mut state, input, &mut output, 0, flags);
    match status {
        TINFLStatus::Done if written == expected && read == input.len() => Ok(output),
        TINFLStatus::Done if read != input.len() => decode_err("bytes after the deflate stream"),
        TINFLStatus::Done => decode_err("deflate stream shorter than declared"),
        TINFLStatus::HasMoreOutput => decode_err("deflate stream longer than declared"),
        _ => decode_err("deflate stream is corrupt or truncated"),
    }
}

fn raw_body(body: &[u8], len: usize) -> CoreResult<Vec<u64>> {
    if body.len() != len.div_ceil(8) {
        return decode_err(format!("raw body has {} bytes for {len} seats", body.len()));
    }
    let mut words = vec![0u64; bits::words_for(len)];
    for (i, &byte) in body.iter().enumerate() {
        words[i / 8] |= u64::from(byte) << (8 * (i % 8));
    }
    let tail = words.clone();
    bits::clear_tail(&mut words, len);
    if words != tail {
        return decode_err("padding bits past the last seat are set");
    }
    Ok(words)
}

fn runs_body(body: &[u8], len: usize) -> CoreResult<Vec<u64>> {
    let mut words = vec![0u64; bits::words_for(len)];
    let mut reader = Reader::new(body);
    let mut at = 0usize;
    let mut available = false;
    let mut first = true;
    while at < len || first {
        let run = reader.bounded((len - at) as u64, "run length")? as usize;
        if run == 0 && !first {
            return decode_err("empty run after the first");
        }
        if available {
            bits::set_range(&mut words, at, at + run);
        }
        at += run;
        available = !available;
        first = false;
    }
    if reader.remaining() != 0 {
        return decode_err("bytes after the last run");
    }
    Ok(words)
}
