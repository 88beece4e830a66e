//! Little helpers over `u64` bitmaps where bit `i` lives in word `i / 64` at position `i % 64`.

pub fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// Clear the bits at and past `len` so equal maps are equal bitmaps.
pub fn clear_tail(words: &mut [u64], len: usize) {
    let full = len / 64;
    if full < words.len() {
        let keep = len % 64;
        words[full] &= if keep == 0 { 0 } else { (1u64 << keep) - 1 };
        words[full + 1..].iter_mut().for_each(|w| *w = 0);
    }
}

pub fn get(words: &[u64], index: usize) -> bool {
    words[index / 64] >> (index % 64) & 1 == 1
}

pub fn flip(words: &mut [u64], index: usize) {
    words[index / 64] ^= 1u64 << (index % 64);
}

/// Set every bit in `[start, end)`.
pub fn set_range(words: &mut [u64], start: usize, end: usize) {
    let mut at = start;
    while at < end {
        let offset = at % 64;
        let span = (64 - offset).min(end - at);
        let mask = if span == 64 {
            u64::MAX
        } else {
            ((1u64 << span) - 1) << offset
        };
        words[at / 64] |= mask;
        at += span;
    }
}

/// Copy `len` bits of `src` (from bit 0) into `dst` at bit `offset`; `dst` bits there must be 0.
pub fn append(dst: &mut [u64], offset: usize, src: &[u64], len: usize) {
    let shift = offset % 64;
    let base = offset / 64;
    for (i, &word) in src.iter().take(words_for(len)).enumerate() {
        let valid = (len - i * 64).min(64);
        let word = if valid == 64 {
            word
        } else {
            word & ((1u64 << valid) - 1)
        };
        dst[base + i] |= word << shift;
        if shift != 0 && base + i + 1 < dst.len() {
            dst[base + i + 1] |= word >> (64 - shift);
        }
    }
}

/// `len` bits of `src` starting at bit `start`, as a fresh bitmap.
pub fn extract(src: &[u64], start: usize, len: usize) -> Vec<u64> {
    let mut out = vec![0u64; words_for(len)];
    let shift = start % 64;
    let base = start / 64;
    for (i, word) in out.iter_mut().enumerate() {
        let low = src.get(base + i).copied().unwrap_or(0) >> shift;
        let high = if shift == 0 {
            0
        } else {
            src.get(base + i + 1).copied().unwrap_or(0) << (64 - shift)
        };
        *word = low | high;
    }
    clear_tail(&mut out, len);
    out
}

pub fn count_ones(words: &[u64]) -> usize {
    words.iter().map(|w| w.count_ones() as usize).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_then_extract_round_trips_at_odd_offsets() {
        let a = vec![0xdead_beef_u64, 0x1];
        let b = vec![u64::MAX];
        let mut dst = vec![0u64; 3];
        append(&mut dst, 0, &a, 70);
        append(&mut dst, 70, &b, 50);
        assert_eq!(extract(&dst, 0, 70), vec![0xdead_beef, 0x1]);
        assert_eq!(extract(&dst, 70, 50), vec![(1u64 << 50) - 1]);
    }

    #[test]
    fn set_range_spans_words() {
        let mut words = vec![0u64; 3];
        set_range(&mut words, 60, 130);
        assert_eq!(count_ones(&words), 70);
        assert!(!get(&words, 59) && get(&words, 60) && get(&words, 129) && !get(&words, 130));
    }
}
