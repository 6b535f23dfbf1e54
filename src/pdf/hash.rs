//! A fast hash for the small integer keys that fonts are full of (character codes, CIDs):
//! a multiply-rotate mix, keyed by a random seed drawn once per process, so that a
//! document cannot aim its codes at collisions without knowing the seed. The standard
//! SipHash was a fifth of an extraction's instructions on real documents, most of it
//! expanding ToUnicode ranges into their codes.

use std::hash::{BuildHasher, Hasher};

/// A [`BuildHasher`] of [`CodeHasher`]s, all with this process's seed.
#[derive(Debug, Clone, Copy)]
pub struct CodeHash {
    seed: u64,
}

impl Default for CodeHash {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED
            .get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64));
        Self { seed }
    }
}

impl BuildHasher for CodeHash {
    type Hasher = CodeHasher;
    fn build_hasher(&self) -> CodeHasher {
        CodeHasher { state: self.seed }
    }
}

/// The hasher of [`CodeHash`].
#[derive(Debug, Clone, Copy)]
pub struct CodeHasher {
    state: u64,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl CodeHasher {
    #[inline]
    fn mix(&mut self, v: u64) {
        self.state = (self.state ^ v).wrapping_mul(K).rotate_left(29);
    }
}

impl Hasher for CodeHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.mix(u64::from(v));
    }

    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.mix(u64::from(v));
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.mix(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The splitmix64 finalizer: every input bit reaches every output bit, so the table
        // can take its index from the high or the low bits alike.
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A hash map keyed by codes.
pub type CodeMap<K, V> = std::collections::HashMap<K, V, CodeHash>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_codes_spread_over_the_table() {
        let h = CodeHash::default();
        let mut buckets = [0u32; 64];
        for code in 0u32..65_536 {
            buckets[(h.hash_one((2u8, code)) >> 58) as usize] += 1;
        }
        // 1,024 a bucket on average: none far off.
        assert!(
            buckets.iter().all(|&n| (700..1400).contains(&n)),
            "{buckets:?}"
        );
        let mut m: CodeMap<(u8, u32), u32> = CodeMap::default();
        m.insert((1, 7), 70);
        assert_eq!(m.get(&(1, 7)), Some(&70));
        assert_eq!(m.get(&(2, 7)), None);
    }
}
