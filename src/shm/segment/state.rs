//! The shared state inside a segment: its table ([`crate::shm::kv`]) in the supervisor's
//! file, which only the supervisor writes and every agent reads in place, and in each slot
//! file the line where the supervisor answers that slot's agent's strong writes.

use super::{Owned, Segment, SegmentError};
use crate::shm::futex::{SleepFlag, WaitPair, WakeWord};
use crate::shm::kv::{KvEntry, KvReader, KvStorage, KvWriter};
use crate::shm::sync::AtomicU64;
use std::sync::Arc;

/// The supervisor's answer to an agent's strong write, in the agent's slot file: the
/// supervisor marks `request` 0 ("no answer"), writes `version`, `status` and `extra`, then
/// `request` (Release), then wakes the agent if it sleeps; the agent waits until `request`
/// is the number of its request (Acquire), and reads the words as a seqlock's.
/// The words are the supervisor's to write and the agent's to read; the agent writes only
/// its sleep flag. Zeroed memory is a valid "no answer yet".
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct StateReply {
    /// The request answered.
    pub request: AtomicU64,
    /// The version the key holds now.
    pub version: AtomicU64,
    /// 1: written; 2: not written (a compare-and-set whose version did not match); 3:
    /// refused (too large, the table full); for the cache, 4: a value (`version` names
    /// its first page buffer, `extra` its length), 5: compute it, 6: compute it and keep
    /// it to yourself.
    pub status: AtomicU64,
    /// A second word of the answer (a cached value's length).
    pub extra: AtomicU64,
    /// Bumped to wake the agent.
    pub wake: WakeWord,
    /// Set by the agent while it sleeps.
    pub sleeping: SleepFlag,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<StateReply>() == 128);

impl StateReply {
    /// Back to "no answer", nobody asleep: for the slot's next agent (its previous one is
    /// dead, so nothing reads the line meanwhile).
    pub fn reset(&self) {
        // Relaxed: no agent runs in the slot; its next incarnation starts after this.
        self.request.store(0, crate::shm::sync::Ordering::Relaxed);
        self.sleeping.clear();
    }

    /// The agent's wait for the answer.
    pub fn wait_pair(&self) -> WaitPair<'_> {
        WaitPair {
            word: &self.wake,
            flag: &self.sleeping,
        }
    }
}

/// The state table of a segment, as a [`KvStorage`].
#[derive(Debug, Clone)]
pub struct SegmentKv {
    /// Keeps the mapping alive.
    _segment: Arc<Segment>,
    entries: *const KvEntry,
    count: usize,
}

// SAFETY: the pointer targets the supervisor's mapping, which the `Arc` keeps alive.
unsafe impl Send for SegmentKv {}
// SAFETY: as above; the table's protocol, not thread affinity, governs access.
unsafe impl Sync for SegmentKv {}

// SAFETY: the `count` entries lie in the validated state region of the supervisor's file,
// mapped as long as `segment` lives; `count` is the configured power of two. Only the
// creator maps that file writable, and only the creator makes a writer.
unsafe impl KvStorage for SegmentKv {
    fn entries(&self) -> &[KvEntry] {
        // SAFETY: see the impl's safety comment; atomics only, valid for any bit pattern.
        unsafe { std::slice::from_raw_parts(self.entries, self.count) }
    }
}

impl Segment {
    fn kv(self: &Arc<Self>) -> SegmentKv {
        let p = self
            .at::<KvEntry>(Owned::Supervisor, self.layout.state.offset)
            .expect("the supervisor's file is always mapped");
        SegmentKv {
            _segment: self.clone(),
            entries: p,
            count: self.layout.config.state_entries as usize,
        }
    }

    /// The state table's writer: only the creator has one (and must keep one).
    pub fn kv_writer(self: &Arc<Self>) -> Option<KvWriter<SegmentKv>> {
        self.creator.then(|| KvWriter::new(self.kv()))
    }

    /// A reader of the state table, in place.
    pub fn kv_reader(self: &Arc<Self>) -> KvReader<SegmentKv> {
        KvReader::new(self.kv())
    }

    /// The reply line of `slot` (in that slot's file).
    pub fn state_reply(&self, slot: u32) -> Result<&StateReply, SegmentError> {
        let p = self.at::<StateReply>(Owned::Slot(slot), self.layout.slot_state_reply.offset)?;
        // SAFETY: the slot file's reply line (validated layout, 128-byte aligned); atomics
        // only.
        Ok(unsafe { &*p })
    }
}
