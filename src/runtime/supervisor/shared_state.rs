//! The shared state as the supervisor keeps it: the one writer of the table in its file
//! ([`crate::shm::kv`]), which every agent reads in place.
//!
//! Two levels, chosen per write:
//! - **Strong**: the supervisor orders every strong write (one lock, one writer), gives it
//!   a version above the key's, and answers the writer only once the table holds it; a
//!   compare-and-set writes only if the key's version is the one given. A read that starts
//!   after a strong write has been answered sees it (the table's store precedes the answer,
//!   and both are stores of one process, seen in order by every other).
//! - **Eventual**: the write carries its writer's clock (`CLOCK_MONOTONIC` ns, one clock on
//!   the host) as its version and is applied only if that is above the key's version: the
//!   last writer by version wins, whatever order the writes arrive in. An agent's eventual
//!   write is visible once the supervisor has taken it from the agent's completion ring: in
//!   its next pass, which the agent's doorbell starts at once (microseconds), and within a
//!   reactor tick (a quarter of the heartbeat period, 25 ms by default) if the supervisor
//!   was busy.
//!
//! A strong write's version is at least the supervisor's clock, so a later eventual write
//! (a later clock) still wins over it and an earlier one that arrives late does not.

use super::error::Error;
use super::state::State;
use super::Supervisor;
use crate::runtime::bus::monotonic_ns;
use crate::shm::descriptor::Descriptor;
use crate::shm::kv::{KvError, KvReader, KvWriter};
use crate::shm::segment::{Segment, SegmentKv};
use std::sync::Arc;

/// How a write is made visible (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Last writer by version wins; visible within a supervisor pass.
    Eventual,
    /// Ordered by the supervisor; visible to every read that starts after it returns.
    Strong,
}

/// What an agent asks of the shared state (a completion descriptor's `arg2`).
pub mod op {
    /// An eventual write; no answer.
    pub const PUT_EVENTUAL: u32 = 1;
    /// A strong write; answered.
    pub const PUT_STRONG: u32 = 2;
    /// A compare-and-set; answered.
    pub const CAS: u32 = 3;
    /// The cache: the value of a key, or the word to compute it; answered (perhaps once
    /// another agent has computed it).
    pub const CACHE_GET: u32 = 4;
    /// The cache: the value computed; no answer.
    pub const CACHE_PUT: u32 = 5;
    /// The cache: the value could not be computed; no answer.
    pub const CACHE_ABANDON: u32 = 6;
    /// The cache: done reading a value; no answer.
    pub const CACHE_RELEASE: u32 = 7;
}

/// [`crate::shm::segment::StateReply::status`] values.
pub mod reply {
    /// Written.
    pub const WRITTEN: u64 = 1;
    /// Not written: the version did not match.
    pub const CONFLICT: u64 = 2;
    /// Refused: too large, the table full, a request that does not parse.
    pub const REFUSED: u64 = 3;
    /// The cache: here is the value.
    pub const CACHE_HIT: u64 = 4;
    /// The cache: compute it, then hand it over.
    pub const CACHE_COMPUTE: u64 = 5;
    /// The cache: compute it, and keep it (it will not be kept).
    pub const CACHE_UNCACHED: u64 = 6;
}

/// An agent's request: its version word, then the key's length (2 bytes), the key, the
/// value, all little-endian.
pub fn encode_request(version: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(10 + key.len() + value.len());
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(key.len().min(u16::MAX as usize) as u16).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    b
}

pub(super) fn decode_request(b: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let version = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let klen = u16::from_le_bytes(b.get(8..10)?.try_into().ok()?) as usize;
    let key = b.get(10..10 + klen)?;
    Some((version, key, &b[10 + klen..]))
}

/// The table's writer and what it counts.
pub(super) struct Store {
    writer: KvWriter<SegmentKv>,
    /// Writes applied, and requests refused.
    pub(super) writes: u64,
    pub(super) refused: u64,
}

impl Store {
    pub(super) fn new(seg: &Arc<Segment>) -> Store {
        Store {
            writer: seg.kv_writer().expect("the supervisor created the segment"),
            writes: 0,
            refused: 0,
        }
    }

    /// A strong write: the version above the key's, and at least the clock.
    fn put_strong(&mut self, key: &[u8], value: &[u8]) -> Result<u64, KvError> {
        let v = self
            .writer
            .version(key)
            .saturating_add(1)
            .max(monotonic_ns());
        self.writer.put(key, value, v)?;
        self.writes += 1;
        Ok(v)
    }

    /// A compare-and-set: written (its version) if the key's version is `expected` (0: the
    /// key has none), else the key's version.
    fn cas(
        &mut self,
        key: &[u8],
        expected: u64,
        value: &[u8],
    ) -> Result<Result<u64, u64>, KvError> {
        let now = self.writer.version(key);
        if now != expected {
            return Ok(Err(now));
        }
        self.put_strong(key, value).map(Ok)
    }

    /// An eventual write at `version`: applied if above the key's. Whether it was.
    fn put_eventual(&mut self, key: &[u8], value: &[u8], version: u64) -> Result<bool, KvError> {
        if version <= self.writer.version(key) {
            return Ok(false);
        }
        self.writer.put(key, value, version)?;
        self.writes += 1;
        Ok(true)
    }
}

impl State {
    /// An agent's request of the shared state (a
    /// [`crate::runtime::task::status::STATE`] descriptor from agent `i`): applied, and
    /// answered in its slot file if it is strong.
    pub(super) fn state_request(&mut self, i: usize, d: &Descriptor) {
        let slot = self.agents[i].slot;
        let Some(bytes) = self.take_message(i, d) else {
            return;
        };
        // An agent waits for one answer at a time: a newer request means it gave up on
        // any older one still waiting here, which must not be answered over this one.
        self.cache_forget(|s, request, _| s == slot && request < d.arg);
        if (op::CACHE_GET..=op::CACHE_RELEASE).contains(&d.arg2) {
            return self.cache_request(i, d, &bytes);
        }
        let mut store = self.store.lock();
        let outcome = match decode_request(&bytes) {
            None => None,
            Some((version, key, value)) => match d.arg2 {
                op::PUT_EVENTUAL => store
                    .put_eventual(key, value, version)
                    .ok()
                    .map(|_| (reply::WRITTEN, version)),
                op::PUT_STRONG => store
                    .put_strong(key, value)
                    .ok()
                    .map(|v| (reply::WRITTEN, v)),
                op::CAS => store.cas(key, version, value).ok().map(|r| match r {
                    Ok(v) => (reply::WRITTEN, v),
                    Err(now) => (reply::CONFLICT, now),
                }),
                _ => None,
            },
        };
        if outcome.is_none() {
            store.refused += 1;
        }
        drop(store);
        if d.arg2 == op::PUT_EVENTUAL {
            return; // no answer
        }
        let (status, version) = outcome.unwrap_or((reply::REFUSED, 0));
        self.answer(slot, d.arg, status, version, 0);
    }

    /// Answers request `request` of the agent in `slot`, in its slot file.
    pub(super) fn answer(&self, slot: u32, request: u64, status: u64, version: u64, extra: u64) {
        let Ok(r) = self.seg.state_reply(slot) else {
            return;
        };
        use crate::shm::sync::{fence, Ordering};
        // The line first reads "no answer" (agents number their requests from 1): an agent
        // reading it while it is rewritten sees its request gone, not another's words
        // under its number.
        // Relaxed + Release fence: SYNC POINT (state answer rewritten): pairs with the
        // agent's Acquire fence after it reads the words, before it loads `request` again.
        r.request.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        // Relaxed (version, extra, status): published by the Release store of `request`.
        r.version
            .store(version, std::sync::atomic::Ordering::Relaxed);
        r.extra.store(extra, std::sync::atomic::Ordering::Relaxed);
        r.status.store(status, std::sync::atomic::Ordering::Relaxed);
        // Release: SYNC POINT (state answer): pairs with the agent's Acquire load of
        // `request` in its wait for this answer.
        r.request
            .store(request, std::sync::atomic::Ordering::Release);
        r.wait_pair().wake();
    }
}

impl Supervisor {
    /// The version and value of `key` in the shared state, read in place.
    pub fn state_get(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>, Error> {
        Ok(self.shared.state_reader.get(key)?)
    }

    /// Writes `value` under `key`; its version. The supervisor's own writes are ordered by
    /// it, so both levels are strong here; `Eventual` only takes the clock as the version.
    pub fn state_put(&self, key: &[u8], value: &[u8], how: Consistency) -> Result<u64, Error> {
        let mut store = self.shared.store.lock();
        Ok(match how {
            Consistency::Strong => store.put_strong(key, value)?,
            Consistency::Eventual => {
                let v = monotonic_ns().max(store.writer.version(key).saturating_add(1));
                store.put_eventual(key, value, v)?;
                v
            }
        })
    }

    /// Writes `value` under `key` only if the key's version is `expected` (0: absent):
    /// `Ok(new version)`, or `Err(the key's version)`.
    pub fn state_cas(
        &self,
        key: &[u8],
        expected: u64,
        value: &[u8],
    ) -> Result<Result<u64, u64>, Error> {
        Ok(self.shared.store.lock().cas(key, expected, value)?)
    }
}

/// A reader of the shared state for the supervisor's own reads.
pub(super) fn reader(seg: &Arc<Segment>) -> KvReader<SegmentKv> {
    seg.kv_reader()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request is an agent's bytes: whatever they are, decoding answers, never panics,
    /// and what it returns lies within them.
    #[test]
    fn requests_decode_or_are_refused_whatever_the_bytes() {
        let good = encode_request(7, b"key", b"value");
        assert_eq!(decode_request(&good), Some((7, &b"key"[..], &b"value"[..])));
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..64 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                if let Some((_, k, v)) = decode_request(&bytes) {
                    assert!(k.len() + v.len() + 10 <= bytes.len());
                }
            }
        }
        for cut in 0..good.len() {
            let _ = decode_request(&good[..cut]);
        }
        assert_eq!(decode_request(&good[..12]), None, "a key cut short");
    }
}
