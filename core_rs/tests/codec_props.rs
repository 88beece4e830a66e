//! Seat-map codec: round trips for every body encoding, deltas, and a decoder that never panics
//! (arbitrary bytes, and mutated encodings with the checksum repaired so the parsers are reached).

use proptest::prelude::*;
use tessera_core::codec::{decode_event, encode_event, SeatMap};
use tessera_core::wire::crc32;
use tessera_core::CoreError;

/// Bitmaps with structure: runs of random lengths, so every body encoding gets chosen.
fn bitmap_strategy() -> impl Strategy<Value = (usize, Vec<u64>)> {
    (
        1usize..5_000,
        prop::collection::vec((any::<bool>(), 1usize..400), 0..64),
        any::<u64>(),
    )
        .prop_map(|(seat_count, runs, noise)| {
            let mut words = vec![0u64; seat_count.div_ceil(64)];
            let mut at = 0;
            for (available, len) in runs {
                for seat in at..(at + len).min(seat_count) {
                    // A sprinkle of noise turns some maps fragmented (raw or deflated raw bodies).
                    let flip = noise & 1 == 1 && (seat as u64).wrapping_mul(noise) % 3 == 0;
                    if available ^ flip {
                        words[seat / 64] |= 1 << (seat % 64);
                    }
                }
                at += len;
            }
            (seat_count, words)
        })
}

fn map_strategy() -> impl Strategy<Value = SeatMap> {
    (bitmap_strategy(), any::<u64>())
        .prop_map(|((n, words), version)| SeatMap::new(n, version >> 1, words).unwrap())
}

fn reseal(mut data: Vec<u8>) -> Vec<u8> {
    if data.len() >= 4 {
        let body = data.len() - 4;
        let crc = crc32(&data[..body]);
        data[body..].copy_from_slice(&crc.to_le_bytes());
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn section_maps_round_trip(map in map_strategy()) {
        let encoded = map.encode();
        prop_assert_eq!(SeatMap::decode(&encoded).unwrap(), map.clone());
        // Never larger than the raw bitmap plus a bounded header.
        prop_assert!(encoded.len() <= map.seat_count().div_ceil(8) + 5 + 3 + 10 + 1 + 4);
    }

    #[test]
    fn deltas_carry_old_to_new(old in map_strategy(), new_bits in bitmap_strategy(), step in 1u64..1_000) {
        let n = old.seat_count();
        let mut words = new_bits.1;
        words.resize(n.div_ceil(64), 0);
        let new = SeatMap::new(n, old.version() + step, words).unwrap();
        let delta = old.delta_to(&new).unwrap();
        let mut applied = old.clone();
        applied.apply_delta(&delta).unwrap();
        prop_assert_eq!(&applied, &new);
        // Applying twice is a version mismatch and changes nothing.
        prop_assert_eq!(
            applied.apply_delta(&delta),
            Err(CoreError::VersionMismatch { expected: old.version(), actual: new.version() })
        );
        prop_assert_eq!(&applied, &new);
    }

    #[test]
    fn event_maps_round_trip(maps in prop::collection::vec(map_strategy(), 1..6), include_versions in any::<bool>()) {
        let parts: Vec<(&[u64], usize, u64)> = maps.iter().map(|m| (m.bits(), m.seat_count(), m.version())).collect();
        let encoded = encode_event(&parts, include_versions).unwrap();
        let counts: Vec<usize> = maps.iter().map(SeatMap::seat_count).collect();
        let decoded = decode_event(&encoded, &counts).unwrap();
        for (got, want) in decoded.maps.iter().zip(&maps) {
            prop_assert_eq!(got.bits(), want.bits());
        }
        prop_assert_eq!(decoded.versions.is_some(), include_versions);
        let mut other = counts.clone();
        other[0] += 1;
        prop_assert!(decode_event(&encoded, &other).is_err(), "another layout must be rejected");
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = SeatMap::decode(&data);
        let _ = decode_event(&data, &[100, 200]);
        let mut map = SeatMap::all_available(100, 0).unwrap();
        let _ = map.apply_delta(&data);
        // Also past the checksum, so the field parsers see the garbage.
        let sealed = reseal(data);
        let _ = SeatMap::decode(&sealed);
        let _ = decode_event(&sealed, &[100, 200]);
        let _ = map.apply_delta(&sealed);
    }

    #[test]
    fn mutations_are_rejected_or_decode_consistently(
        map in map_strategy(),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
    ) {
        let encoded = map.encode();
        let mut flipped = encoded.clone();
        let at = position.index(flipped.len());
        flipped[at] ^= 1 << bit;
        // Without repairing the checksum a single flipped bit is always caught.
        prop_assert!(matches!(SeatMap::decode(&flipped), Err(CoreError::Decode(_))));
        // Truncation is always caught.
        let truncated = &encoded[..cut.index(encoded.len())];
        prop_assert!(SeatMap::decode(truncated).is_err());
        // With the checksum repaired, whatever still decodes re-encodes to a valid map.
        if let Ok(decoded) = SeatMap::decode(&reseal(flipped)) {
            prop_assert_eq!(SeatMap::decode(&decoded.encode()).unwrap(), decoded);
        }
    }
}

#[test]
fn every_body_encoding_is_used() {
    let n = 4_000;
    let mut fragmented = vec![0u64; n / 64 + 1];
    let mut state = 7u64;
    for seat in 0..n {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        if state >> 63 == 1 {
            fragmented[seat / 64] |= 1 << (seat % 64);
        }
    }
    let mut half_rows = vec![0u64; n / 64 + 1];
    for seat in (0..n).filter(|s| (s / 30) % 2 == 0) {
        half_rows[seat / 64] |= 1 << (seat % 64);
    }
    let mut groups = vec![0u64; n / 64 + 1];
    for seat in (0..n).filter(|s| (s * 7 / 5) % 3 == 0) {
        groups[seat / 64] |= 1 << (seat % 64);
    }
    let maps = [
        SeatMap::all_available(n, 1).unwrap(),
        SeatMap::new(n, 2, fragmented).unwrap(),
        SeatMap::new(n, 3, half_rows).unwrap(),
        SeatMap::new(n, 4, groups).unwrap(),
    ];
    let mut tags: Vec<u8> = maps
        .iter()
        .map(|m| {
            let encoded = m.encode();
            assert_eq!(&SeatMap::decode(&encoded).unwrap(), m);
            // Section map header: 5 bytes, seat count (2-byte varint), version (1 byte).
            encoded[8]
        })
        .collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(
        tags,
        vec![0, 1, 2, 3],
        "bodies raw, runs, deflated raw, deflated runs"
    );
}

#[test]
fn oversized_and_foreign_inputs() {
    let huge = vec![0u8; tessera_core::limits::SEATMAP_BYTES_MAX + 1];
    assert!(SeatMap::decode(&huge).is_err());
    let map = SeatMap::all_available(10, 0).unwrap();
    let mut other_kind = map.encode();
    other_kind[3] = 2;
    assert!(SeatMap::decode(&reseal(other_kind)).is_err());
    let mut future_format = map.encode();
    future_format[2] = 9;
    assert!(SeatMap::decode(&reseal(future_format)).is_err());
}

#[test]
fn bytes_after_a_deflate_stream_are_rejected() {
    // A fragmented map is stored as deflated raw bitmap; stray bytes after the stream, with the
    // checksum recomputed, must not decode.
    let mut words = vec![0u64; 4_000usize.div_ceil(64)];
    for seat in (0..4_000).filter(|s| (s * 7919) % 5 < 2) {
        words[seat / 64] |= 1 << (seat % 64);
    }
    let encoded = SeatMap::new(4_000, 3, words).unwrap().encode();
    assert!(
        matches!(encoded[8], 2 | 3),
        "the fixture must use a deflated body"
    );
    let mut padded = encoded[..encoded.len() - 4].to_vec();
    padded.extend_from_slice(b"abc");
    padded.extend_from_slice(&[0; 4]);
    assert!(matches!(
        SeatMap::decode(&reseal(padded)),
        Err(CoreError::Decode(_))
    ));
}

#[test]
fn impossible_layouts_are_rejected_before_anything_is_sized() {
    let maps = [
        SeatMap::all_available(10, 0).unwrap(),
        SeatMap::all_available(20, 0).unwrap(),
    ];
    let parts: Vec<(&[u64], usize, u64)> = maps
        .iter()
        .map(|m| (m.bits(), m.seat_count(), m.version()))
        .collect();
    let encoded = encode_event(&parts, false).unwrap();
    // Counts whose sum wraps to the right total and whose u32 casts hash like the real layout.
    let wrapping = [
        10 + (1usize << 52),
        20usize.wrapping_add(usize::MAX - (1 << 52) + 1),
    ];
    for counts in [&wrapping[..], &[], &[0, 30], &[70_000, 10]] {
        assert!(
            matches!(decode_event(&encoded, counts), Err(CoreError::InvalidArgument(_))),
            "{counts:?}"
        );
    }
    assert!(decode_event(&encoded, &[10, 20]).is_ok());
}
