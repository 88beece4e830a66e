//! Engine-only cost of exact 2-seat holds in group-commit batches (no Python), to split the
//! binding's share from the engine's. Run: `cargo run --release -p tessera_core --example hold_throughput`

use std::time::Instant;

use tessera_core::event::EventSeats;
use tessera_core::layout::Layout;
use tessera_core::section;

fn main() {
    let build = || {
        let layouts = (0..100)
            .map(|_| Layout::new(&[28; 25], None))
            .collect::<Result<Vec<_>, _>>();
        EventSeats::new(layouts.expect("valid layout")).expect("valid event")
    };
    let mut state: u64 = 99;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let requests: Vec<(u32, Vec<u32>)> = (0..20_000)
        .map(|_| {
            let start = next(699) as u32;
            (next(100) as u32, vec![start, start + 1])
        })
        .collect();
    for _ in 0..3 {
        let mut event = build();
        let started = Instant::now();
        for batch in requests.chunks(256) {
            event.apply_many(batch, section::HOLD).expect("valid batch");
        }
        let per_hold = started.elapsed().as_secs_f64() * 1e9 / requests.len() as f64;
        println!("{per_hold:.0} ns per hold, {:.2} M holds/s", 1e3 / per_hold);
    }
}
