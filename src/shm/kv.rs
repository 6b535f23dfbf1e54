//! A key-value table that one writer fills and any number of readers read in place: the
//! shared state's storage.
//!
//! The table is a fixed array of entries, open addressing with linear probing by a hash of
//! the key. A key's entry is given once, the first time the key is written, and never
//! moves or goes, so a reader's probe sequence is the writer's. Only the writer (in a
//! segment, the supervisor) writes entries; a reader needs no round trip and takes no lock.
//!
//! Each entry is a seqlock, as the bus's slots are ([`crate::shm::bus`]): its sequence word
//! is odd while the writer writes it, and moves on with every write; a reader copies the
//! entry between two loads of the word (Acquire, then an Acquire fence before the second)
//! and keeps the copy only if both read the same even value. So no reader ever returns a
//! torn value, whatever it races. Data words are relaxed atomics.
//!
//! Nothing a reader reads is trusted: lengths past an entry's room, a key of another hash,
//! a word that stays odd, are reported ([`KvError`]) or skipped, never followed.
//!
//! ```
//! use neuralflow_swarm::kv::heap_kv;
//!
//! let (mut w, r) = heap_kv(16);
//! w.put(b"mode", b"fast", 1).unwrap();
//! assert_eq!(r.get(b"mode").unwrap(), Some((1, b"fast".to_vec())));
//! assert_eq!(r.get(b"other").unwrap(), None);
//! ```

use crate::shm::sync::{fence, load_words, store_words, AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::Arc;

/// Data words in an entry (key, then value).
#[cfg(not(loom))]
const DATA_WORDS: usize = 60;
/// Fewer under loom.
#[cfg(loom)]
const DATA_WORDS: usize = 2;

/// The longest key.
pub const KEY_MAX: usize = if DATA_WORDS * 8 >= 64 { 64 } else { 8 };
/// The longest value.
pub const VALUE_MAX: usize = DATA_WORDS * 8 - KEY_MAX;

/// How long a reader retries an entry that is being written before it gives up (the writer
/// is then dead mid-write, or writes that one key without pause).
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// One key's entry: 512 bytes.
#[repr(C)]
#[derive(Debug)]
pub struct KvEntry {
    /// Odd while written; 0 for an entry never written.
    seq: AtomicU64,
    /// The value's version.
    version: AtomicU64,
    /// The key's length (low 32 bits) and the value's (high 32 bits).
    lens: AtomicU64,
    /// The key's hash.
    hash: AtomicU64,
    /// The key (at `KEY_MAX` bytes' room), then the value, little-endian words.
    data: [AtomicU64; DATA_WORDS],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<KvEntry>() == 512);

impl Default for KvEntry {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            version: AtomicU64::new(0),
            lens: AtomicU64::new(0),
            hash: AtomicU64::new(0),
            data: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Where a table's entries live.
///
/// # Safety
///
/// `entries()` must return the same slice on every call, of a power-of-two length, valid as
/// long as the storage value lives. Readers only read it (it may be mapped read-only).
pub unsafe trait KvStorage {
    /// The entries.
    fn entries(&self) -> &[KvEntry];
}

/// A table on the heap (tests, loom models).
#[derive(Debug)]
pub struct HeapKv {
    entries: Box<[KvEntry]>,
}

// SAFETY: the boxed entries live as long as the `Arc`; their count is a power of two fixed
// at construction.
unsafe impl KvStorage for Arc<HeapKv> {
    fn entries(&self) -> &[KvEntry] {
        &self.entries
    }
}

/// A heap table of `entries` entries (rounded up to a power of two), its writer and a
/// reader.
pub fn heap_kv(entries: usize) -> (KvWriter<Arc<HeapKv>>, KvReader<Arc<HeapKv>>) {
    let n = entries.max(1).next_power_of_two();
    let t = Arc::new(HeapKv {
        entries: (0..n).map(|_| KvEntry::default()).collect(),
    });
    (KvWriter::new(t.clone()), KvReader::new(t))
}

/// Why a table could not answer or take a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A key longer than [`KEY_MAX`] or empty, or a value longer than [`VALUE_MAX`].
    #[error("key of {key} bytes (1 to {KEY_MAX}) or value of {value} bytes (at most {VALUE_MAX})")]
    TooLarge {
        /// The key's length.
        key: usize,
        /// The value's length.
        value: usize,
    },
    /// Every entry holds another key.
    #[error("the table is full ({0} keys)")]
    Full(usize),
    /// An entry whose lengths make no sense.
    #[error("an entry is corrupt")]
    Corrupt,
    /// An entry that stayed mid-write for a second: its writer died in the middle, or
    /// never pauses.
    #[error("an entry stayed mid-write")]
    Busy,
}

/// FNV-1a, 64 bits: the same hash in every process, whatever its build.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether `key` and `value` fit an entry.
pub fn check(key: &[u8], value: &[u8]) -> Result<(), KvError> {
    if key.is_empty() || key.len() > KEY_MAX || value.len() > VALUE_MAX {
        return Err(KvError::TooLarge {
            key: key.len(),
            value: value.len(),
        });
    }
    Ok(())
}

/// The writing end (one per table).
#[derive(Debug)]
pub struct KvWriter<S: KvStorage> {
    storage: S,
    /// Each key's entry, and that entry's writes so far (the sequence words are ours:
    /// the shared copies are published, not read back).
    index: HashMap<Vec<u8>, (usize, u64, u64)>,
    /// Entries given to a key.
    used: Vec<bool>,
    mask: usize,
}

impl<S: KvStorage> KvWriter<S> {
    /// The writer of a table that is empty (all zero).
    pub fn new(storage: S) -> Self {
        let mask = storage.entries().len() - 1;
        Self {
            storage,
            index: HashMap::new(),
            used: vec![false; mask + 1],
            mask,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The version `key` holds (0: none).
    pub fn version(&self, key: &[u8]) -> u64 {
        self.index.get(key).map_or(0, |&(_, _, v)| v)
    }

    /// Writes `value` under `key` at `version`.
    pub fn put(&mut self, key: &[u8], value: &[u8], version: u64) -> Result<(), KvError> {
        check(key, value)?;
        let hash = key_hash(key);
        let (i, writes) = match self.index.get(key) {
            Some(&(i, writes, _)) => (i, writes),
            None => {
                if self.index.len() > self.mask {
                    return Err(KvError::Full(self.index.len()));
                }
                let mut i = hash as usize & self.mask;
                while self.used[i] {
                    i = (i + 1) & self.mask;
                }
                self.used[i] = true;
                (i, 0)
            }
        };
        let e = &self.storage.entries()[i];
        // Relaxed, then the fence: a reader that reads any word written below reads this
        // mark too.
        e.seq
            .store(writes.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
        // Release: SYNC POINT (entry being written): pairs with the reader's Acquire fence
        // before its second load of `seq`.
        fence(Ordering::Release);
        // Relaxed (version, lens, hash, data): ordered by the fence above and the Release
        // below.
        e.version.store(version, Ordering::Relaxed);
        e.lens.store(
            key.len() as u64 | ((value.len() as u64) << 32),
            Ordering::Relaxed,
        );
        e.hash.store(hash, Ordering::Relaxed);
        store_words(&e.data[..KEY_MAX / 8], key);
        store_words(&e.data[KEY_MAX / 8..], value);
        // Release: SYNC POINT (entry written): pairs with the reader's Acquire load of
        // `seq`: a reader that reads the even value sees every word above.
        e.seq
            .store(writes.wrapping_mul(2).wrapping_add(2), Ordering::Release);
        self.index
            .insert(key.to_vec(), (i, writes.wrapping_add(1), version));
        Ok(())
    }
}

impl<S: KvStorage> KvWriter<S> {
    /// Overwrites an entry's words, as anything that could write the table might. For
    /// tests of the readers.
    #[doc(hidden)]
    pub fn scribble_for_tests(&self, entry: usize, words: [u64; 5]) {
        let e = &self.storage.entries()[entry & self.mask];
        // Relaxed: simulating a writer that does not follow the protocol.
        e.seq.store(words[0], Ordering::Relaxed);
        e.version.store(words[1], Ordering::Relaxed);
        e.lens.store(words[2], Ordering::Relaxed);
        e.hash.store(words[3], Ordering::Relaxed);
        e.data[0].store(words[4], Ordering::Relaxed);
    }
}

/// A reading end: in place, without a lock or a round trip.
#[derive(Debug, Clone)]
pub struct KvReader<S: KvStorage> {
    storage: S,
    mask: usize,
}

impl<S: KvStorage> KvReader<S> {
    /// A reader of a table.
    pub fn new(storage: S) -> Self {
        let mask = storage.entries().len() - 1;
        Self { storage, mask }
    }

    /// The version and value of `key`, if it has one.
    pub fn get(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>, KvError> {
        if key.is_empty() || key.len() > KEY_MAX {
            return Ok(None);
        }
        let hash = key_hash(key);
        let mut i = hash as usize & self.mask;
        let mut k = Vec::with_capacity(key.len());
        for _ in 0..=self.mask {
            let e = &self.storage.entries()[i];
            match read(e, hash, &mut k)? {
                None => return Ok(None), // the probe ends at an entry never written
                Some((h, version, value)) if h == hash && k == key => {
                    return Ok(Some((version, value)))
                }
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        Ok(None)
    }
}

/// One entry's hash, version and value, its key into `key`; `None` for an entry never
/// written. An entry whose hash is not `want` is another key's: its key and value are not
/// copied (`key` is left empty, the value empty), only its hash is told.
#[allow(clippy::type_complexity)]
fn read(e: &KvEntry, want: u64, key: &mut Vec<u8>) -> Result<Option<(u64, u64, Vec<u8>)>, KvError> {
    let mut value = Vec::new();
    // The clock is read only once the entry has been found mid-write, then now and then.
    let mut since: Option<std::time::Instant> = None;
    let mut tries = 0u32;
    let mut patience = || {
        tries = tries.wrapping_add(1);
        crate::shm::sync::spin_loop();
        let start = *since.get_or_insert_with(std::time::Instant::now);
        tries % 1024 != 0 || start.elapsed() < PATIENCE
    };
    loop {
        // Acquire: SYNC POINT (entry written): pairs with the writer's Release of the even
        // value.
        let s1 = e.seq.load(Ordering::Acquire);
        if s1 == 0 {
            return Ok(None);
        }
        if s1 % 2 == 1 {
            if !patience() {
                return Err(KvError::Busy);
            }
            continue; // being written
        }
        // Relaxed (version, lens, hash, data): checked by the second load below.
        let version = e.version.load(Ordering::Relaxed);
        let lens = e.lens.load(Ordering::Relaxed);
        let hash = e.hash.load(Ordering::Relaxed);
        let (klen, vlen) = ((lens as u32) as usize, (lens >> 32) as usize);
        let fits = klen <= KEY_MAX && vlen <= VALUE_MAX;
        if fits && hash == want {
            load_words(&e.data[..KEY_MAX / 8], klen, key);
            load_words(&e.data[KEY_MAX / 8..], vlen, &mut value);
        } else {
            key.clear();
            value.clear();
        }
        // Acquire: SYNC POINT (entry being written): pairs with the writer's Release fence
        // after its odd mark: if anything above was written after it, the load below reads
        // the mark or later.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        if e.seq.load(Ordering::Relaxed) != s1 {
            if !patience() {
                return Err(KvError::Busy);
            }
            continue; // written meanwhile: again
        }
        if !fits {
            return Err(KvError::Corrupt);
        }
        return Ok(Some((hash, version, value)));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn puts_are_read_back_with_their_versions_and_collisions_probe_on() {
        let (mut w, r) = heap_kv(4);
        for (i, k) in [&b"a"[..], b"b", b"c", b"d"].iter().enumerate() {
            w.put(k, &[i as u8; 10], i as u64 + 1).unwrap();
        }
        assert_eq!(w.put(b"e", b"", 1), Err(KvError::Full(4)));
        w.put(b"c", b"again", 9).unwrap();
        assert_eq!(r.get(b"c").unwrap(), Some((9, b"again".to_vec())));
        assert_eq!(r.get(b"a").unwrap(), Some((1, vec![0; 10])));
        assert_eq!(r.get(b"zz").unwrap(), None);
        assert_eq!(w.version(b"c"), 9);
        let long = vec![1u8; VALUE_MAX];
        w.put(b"a", &long, 2).unwrap();
        assert_eq!(r.get(b"a").unwrap().unwrap().1, long);
        assert!(w.put(b"a", &[0; VALUE_MAX + 1], 3).is_err());
        assert!(w.put(&[0; KEY_MAX + 1], b"", 3).is_err());
        assert!(w.put(b"", b"x", 3).is_err());
    }

    #[test]
    fn a_reader_racing_the_writer_never_sees_a_torn_value() {
        let (mut w, r) = heap_kv(8);
        w.put(b"k", &[0u8; 300], 0).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (v, bytes) = r.get(b"k").unwrap().unwrap();
                    assert!(bytes.iter().all(|&b| b == v as u8), "torn at version {v}");
                    seen += 1;
                }
                seen
            })
        };
        for v in 1..100_000u64 {
            w.put(b"k", &[v as u8; 300], v).unwrap();
            for _ in 0..50 {
                std::hint::spin_loop();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
