//! Byte-level building blocks of the seat-map format: LEB128 varints, CRC-32, a bounds-checked
//! reader that never panics and never trusts a length it has not checked.

use crate::error::{decode_err, CoreResult};

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    pub fn u8(&mut self, what: &str) -> CoreResult<u8> {
        match self.data.get(self.at) {
            Some(&byte) => {
                self.at += 1;
                Ok(byte)
            }
            None => decode_err(format!("truncated before {what}")),
        }
    }

    pub fn bytes(&mut self, len: usize, what: &str) -> CoreResult<&'a [u8]> {
        if len > self.remaining() {
            return decode_err(format!("truncated in {what}"));
        }
        let slice = &self.data[self.at..self.at + len];
        self.at += len;
        Ok(slice)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let slice = &self.data[self.at..];
        self.at = self.data.len();
        slice
    }

    pub fn u32_le(&mut self, what: &str) -> CoreResult<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64_le(&mut self, what: &str) -> CoreResult<u64> {
        let b = self.bytes(8, what)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(b);
        Ok(u64::from_le_bytes(word))
    }

    /// Canonical LEB128 only: at most 10 bytes, no overflow, no redundant trailing zero byte.
    pub fn varint(&mut self, what: &str) -> CoreResult<u64> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self.u8(what)?;
            let payload = u64::from(byte & 0x7f);
            if index == 9 && payload > 1 {
                return decode_err(format!("{what} overflows 64 bits"));
            }
            value |= payload << (7 * index);
            if byte & 0x80 == 0 {
                if index > 0 && byte == 0 {
                    return decode_err(format!("{what} is not minimally encoded"));
                }
                return Ok(value);
            }
        }
        decode_err(format!("{what} is longer than 10 bytes"))
    }

    /// A varint that must lie in `0..=max`.
    pub fn bounded(&mut self, max: u64, what: &str) -> CoreResult<u64> {
        let value = self.varint(what)?;
        if value > max {
            return decode_err(format!("{what} {value} exceeds {max}"));
        }
        Ok(value)
    }
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE 802.3, as zlib's `crc32` and PNG): the browser and Python can check it too.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// FNV-1a 64: a cheap, well-known hash any client can recompute.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in data {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_rejections() {
        for value in [0u64, 1, 127, 128, 70_000, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(Reader::new(&out).varint("v"), Ok(value));
        }
        assert!(Reader::new(&[0x80, 0x00]).varint("v").is_err());
        assert!(Reader::new(&[0x80]).varint("v").is_err());
        assert!(Reader::new(&[0xff; 11]).varint("v").is_err());
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert!(Reader::new(&too_big).varint("v").is_err());
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
