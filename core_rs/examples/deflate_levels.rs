//! Why `codec::DEFLATE_LEVEL` is 1: time and size of each level on a fragmented 70,000-seat
//! bitmap (random groups of 1–8), the case where deflate runs on the largest input.
//! Run: `cargo run --release -p tessera_core --example deflate_levels`

use std::time::Instant;

use miniz_oxide::deflate::compress_to_vec;

fn fragmented_bitmap(seats: usize) -> Vec<u8> {
    let mut state: u64 = 12_345;
    let mut bytes = vec![0u8; seats.div_ceil(8)];
    let (mut at, mut available) = (0, true);
    while at < seats {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let run = 1 + (state % 8) as usize;
        for seat in at..(at + run).min(seats) {
            if available {
                bytes[seat / 8] |= 1 << (seat % 8);
            }
        }
        at += run;
        available = !available;
    }
    bytes
}

fn main() {
    let bitmap = fragmented_bitmap(70_000);
    let rounds = 500;
    for level in [1u8, 2, 3, 6, 9] {
        let started = Instant::now();
        let mut size = 0;
        for _ in 0..rounds {
            size = compress_to_vec(&bitmap, level).len();
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!(
            "level {level}: {size} bytes from {}, {micros:.1} us",
            bitmap.len()
        );
    }
}
