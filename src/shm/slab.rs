//! The page-buffer slab: fixed-size buffers in the shared segment, named by
//! `{index, generation}` handles, with an ownership ledger that is also the allocator.
//!
//! # Design
//!
//! Every buffer has an *owner word* in a dense array (the ledger): `0` is free, `1` the
//! supervisor, `2 + slot` the agent in that slot. Allocation is one compare-and-swap of an
//! owner word from free to the new holder; release is one compare-and-swap back. There is no
//! separate free list, on purpose: with a Treiber stack, an agent killed between popping a
//! buffer off the list and recording itself as owner would leak that buffer where no ledger
//! scan can find it. Here, at every instant, each buffer is either free or recorded against
//! exactly one holder, so when an agent dies the supervisor reclaims exactly its buffers by
//! scanning the ledger ([`Slab::reclaim`]). To find a free buffer quickly, each process scans
//! from its own cursor (agents start at different offsets), and the dense owner array keeps a
//! scan at 16 buffers per cache line.
//!
//! Each buffer also has a generation, raised on every release, so that a stale handle (one
//! kept after its buffer was released and reused) fails validation instead of aliasing
//! someone else's data.
//!
//! # Payloads larger than one buffer: chains
//!
//! A payload spans a *chain* of buffers: each buffer's metadata holds the number of bytes
//! used in it and the handle of the next buffer. A descriptor names the first handle and the
//! total length. Chains keep every buffer the same size (no size classes to tune, no
//! fragmentation) at the cost of a payload not being contiguous; readers get an iterator of
//! slices ([`Slab::segments`]), with no copy.
//!
//! # Trust
//!
//! Agents share this memory and can write any of it. Every handle, length, link and owner
//! read from the segment is checked before it is used: indices against the buffer count,
//! generations against the ledger, lengths against the buffer size and the descriptor's
//! total, chain walks against a hop limit. A failed check is a [`SlabError`], never a panic or
//! an out-of-bounds access.
//!
//! Ownership moves between parties with [`Slab::claim_chain`]: the receiver changes the owner
//! words from the sender to itself before using the buffers, so that a sender that dies
//! afterwards cannot have them reclaimed from under the receiver.

use crate::shm::plain::SharedLine;
use crate::shm::sync::{AtomicU32, AtomicU64, Ordering};
use std::fmt;

/// Owner-word value of a free buffer.
pub const FREE: u32 = 0;

/// Who holds a buffer, as recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The supervisor process.
    Supervisor,
    /// The agent in this slot.
    Agent(u32),
}

impl Owner {
    /// The ledger encoding: `1` for the supervisor, `2 + slot` for an agent.
    pub const fn encode(self) -> u32 {
        match self {
            Owner::Supervisor => 1,
            Owner::Agent(slot) => slot.saturating_add(2),
        }
    }

    /// Decodes a ledger word; `None` for a free buffer.
    pub const fn decode(word: u32) -> Option<Owner> {
        match word {
            FREE => None,
            1 => Some(Owner::Supervisor),
            n => Some(Owner::Agent(n - 2)),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Supervisor => write!(f, "supervisor"),
            Owner::Agent(slot) => write!(f, "agent slot {slot}"),
        }
    }
}

/// Names one buffer: its index and the generation it had when it was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageHandle {
    /// Position in the slab.
    pub index: u32,
    /// Generation at allocation time.
    pub generation: u32,
}

impl PageHandle {
    /// The raw value meaning "no buffer".
    pub const NIL_RAW: u64 = u64::MAX;

    /// Packs the handle into one word for a descriptor.
    pub const fn to_raw(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    /// Unpacks a word; `None` for [`PageHandle::NIL_RAW`]. The handle is not yet validated.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        if raw == Self::NIL_RAW {
            None
        } else {
            Some(Self {
                index: raw as u32,
                generation: (raw >> 32) as u32,
            })
        }
    }
}

/// Per-buffer metadata beside the owner word. Zeroed memory is valid.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BufferMeta {
    /// Raised on every release.
    generation: AtomicU32,
    /// Bytes used in this buffer.
    len: AtomicU32,
    /// Raw handle of the next buffer in the chain, or `NIL_RAW`.
    chain_next: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BufferMeta>() == 16);

impl BufferMeta {
    /// The raw words `(generation, len, chain_next)`. Any process that maps the segment can
    /// write them; tests use this to play a misbehaving agent.
    pub fn words(&self) -> (&AtomicU32, &AtomicU32, &AtomicU64) {
        (&self.generation, &self.len, &self.chain_next)
    }
}

/// Per-slab control block: summary counters, for monitoring only (the owner words are the
/// truth). Zeroed memory is valid.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SlabControl {
    /// Allocations since creation (monotonic; monitoring only).
    allocs: SharedLine<AtomicU64>,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<SlabControl>() == 128);

/// Where a slab's ledger and buffers live.
///
/// # Safety
///
/// `owners()` and `metas()` must have the same length, the same on every call, below
/// `u32::MAX`; `data_ptr(i)` for `i` below that length must point to `buffer_size()` bytes
/// that stay valid as long as the storage lives and do not overlap other buffers.
pub unsafe trait SlabStorage {
    /// The control block.
    fn control(&self) -> &SlabControl;
    /// The owner words (the ledger).
    fn owners(&self) -> &[AtomicU32];
    /// The per-buffer metadata.
    fn metas(&self) -> &[BufferMeta];
    /// Bytes per buffer.
    fn buffer_size(&self) -> usize;
    /// Start of buffer `index`.
    fn data_ptr(&self, index: u32) -> *mut u8;
}

/// What went wrong with a slab operation. Errors about data read from the segment name the
/// holder that was expected to own it, so the layer above can blame the right agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlabError {
    /// No free buffer for the request.
    #[error("page-buffer slab exhausted: {needed} buffer(s) needed, {free} free of {total}")]
    Exhausted {
        /// Buffers the request needed.
        needed: usize,
        /// Buffers free at the time of the scan.
        free: usize,
        /// Buffers in the slab.
        total: usize,
    },
    /// A payload longer than the whole slab.
    #[error("payload of {len} bytes exceeds the slab's {max} bytes")]
    TooLarge {
        /// Requested length.
        len: u64,
        /// What the slab could hold if empty.
        max: u64,
    },
    /// A handle whose index is out of range, or whose generation is stale.
    #[error("bad page handle {raw:#x} from {holder}: {reason}")]
    BadHandle {
        /// The raw handle as read.
        raw: u64,
        /// Who was supposed to hold it.
        holder: Owner,
        /// What failed.
        reason: &'static str,
    },
    /// The ledger says someone else holds the buffer.
    #[error("buffer {index} is held by {found}, not {holder}")]
    NotOwner {
        /// The buffer.
        index: u32,
        /// Who was supposed to hold it.
        holder: Owner,
        /// The ledger word found (decoded for display).
        found: LedgerWord,
    },
    /// A chain whose links or lengths do not add up.
    #[error("bad buffer chain from {holder}: {reason}")]
    BadChain {
        /// Who was supposed to hold it.
        holder: Owner,
        /// What failed.
        reason: String,
    },
}

/// A raw ledger word, displayed as its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerWord(pub u32);

impl fmt::Display for LedgerWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Owner::decode(self.0) {
            None => write!(f, "nobody (free)"),
            Some(o) => o.fmt(f),
        }
    }
}

/// A view of a slab, with this process's allocation cursor.
#[derive(Debug)]
pub struct Slab<S: SlabStorage> {
    storage: S,
    count: u32,
    buffer_size: usize,
    /// Where this process's next free-buffer scan starts. Process-local.
    cursor: AtomicU32,
}

impl<S: SlabStorage> Slab<S> {
    /// A view of the slab in `storage`; `start` spreads the scans of different processes.
    pub fn new(storage: S, start: u32) -> Self {
        let count = storage.owners().len() as u32;
        debug_assert_eq!(storage.metas().len(), count as usize);
        let buffer_size = storage.buffer_size();
        Self {
            storage,
            count,
            buffer_size,
            cursor: AtomicU32::new(if count == 0 { 0 } else { start % count }),
        }
    }

    /// Number of buffers.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes per buffer.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// The underlying storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    fn owner_word(&self, index: u32) -> &AtomicU32 {
        &self.storage.owners()[index as usize]
    }

    fn meta(&self, index: u32) -> &BufferMeta {
        &self.storage.metas()[index as usize]
    }

    /// Allocates one buffer for `owner`. Lock-free: one CAS on success, a bounded scan of the
    /// ledger to find a candidate.
    pub fn alloc(&self, owner: Owner) -> Result<PageHandle, SlabError> {
        let n = self.count;
        // Relaxed: the cursor is a process-local hint; any value is correct.
        let start = self.cursor.load(Ordering::Relaxed);
        let want = owner.encode();
        for step in 0..n {
            let mut i = start + step;
            if i >= n {
                i -= n;
            }
            let word = self.owner_word(i);
            // Relaxed: a pre-check to skip held buffers; the CAS below decides.
            if word.load(Ordering::Relaxed) != FREE {
                continue;
            }
            // Acquire: SYNC POINT (buffer released): the previous holder's writes to the
            // buffer and its metadata (generation bump) happen before ours; pairs with the
            // Release in `release_one`.
            if word
                .compare_exchange(FREE, want, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                let next = if i + 1 == n { 0 } else { i + 1 };
                // Relaxed: process-local hint.
                self.cursor.store(next, Ordering::Relaxed);
                let meta = self.meta(i);
                // Relaxed: we own the buffer now; nobody else may touch its metadata, and
                // the handover to the next holder is ordered by the owner word.
                meta.len.store(0, Ordering::Relaxed);
                meta.chain_next
                    .store(PageHandle::NIL_RAW, Ordering::Relaxed);
                // Relaxed: synchronized by the Acquire CAS on the owner word above.
                let generation = meta.generation.load(Ordering::Relaxed);
                // Relaxed: monitoring counter.
                self.storage
                    .control()
                    .allocs
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(PageHandle {
                    index: i,
                    generation,
                });
            }
        }
        Err(SlabError::Exhausted {
            needed: 1,
            free: self.free_count(),
            total: n as usize,
        })
    }

    /// Checks a handle against the ledger: in range, current generation, held by `holder`.
    pub fn check(&self, handle: PageHandle, holder: Owner) -> Result<(), SlabError> {
        if handle.index >= self.count {
            return Err(SlabError::BadHandle {
                raw: handle.to_raw(),
                holder,
                reason: "index out of range",
            });
        }
        // Relaxed: we only compare; the owner word below decides who may act.
        if self.meta(handle.index).generation.load(Ordering::Relaxed) != handle.generation {
            return Err(SlabError::BadHandle {
                raw: handle.to_raw(),
                holder,
                reason: "stale generation",
            });
        }
        // Relaxed: a check; callers that act on the buffer then CAS the owner word.
        let found = self.owner_word(handle.index).load(Ordering::Relaxed);
        if found != holder.encode() {
            return Err(SlabError::NotOwner {
                index: handle.index,
                holder,
                found: LedgerWord(found),
            });
        }
        Ok(())
    }

    /// Releases a buffer held by `holder` (not the rest of its chain).
    pub fn release(&self, handle: PageHandle, holder: Owner) -> Result<(), SlabError> {
        self.check(handle, holder)?;
        self.release_one(handle.index, holder)
    }

    fn release_one(&self, index: u32, holder: Owner) -> Result<(), SlabError> {
        let meta = self.meta(index);
        // Relaxed: ordered before the owner word's Release below.
        meta.generation.fetch_add(1, Ordering::Relaxed);
        // Release: SYNC POINT (buffer released): our writes to the buffer and the generation
        // bump are visible to the next allocator; pairs with the Acquire CAS in `alloc`.
        self.owner_word(index)
            .compare_exchange(holder.encode(), FREE, Ordering::Release, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|found| {
                // Someone changed the owner between our check and the CAS (a concurrent
                // release of the same handle): undo nothing, the generation bump only makes
                // the stale handle more surely stale.
                SlabError::NotOwner {
                    index,
                    holder,
                    found: LedgerWord(found),
                }
            })
    }

    /// Allocates a chain for a payload of `len` bytes and copies `bytes` into it. Returns the
    /// first handle. On failure nothing stays allocated.
    pub fn write_payload(&self, owner: Owner, bytes: &[u8]) -> Result<PageHandle, SlabError> {
        self.write_payload_handles(owner, bytes).map(|h| h[0])
    }

    /// As [`Slab::write_payload`], returning every buffer of the chain, in order.
    pub fn write_payload_handles(
        &self,
        owner: Owner,
        bytes: &[u8],
    ) -> Result<Vec<PageHandle>, SlabError> {
        let len = bytes.len() as u64;
        let max = self.count as u64 * self.buffer_size as u64;
        if len > max {
            return Err(SlabError::TooLarge { len, max });
        }
        let parts = bytes.len().div_ceil(self.buffer_size).max(1);
        let mut handles: Vec<PageHandle> = Vec::with_capacity(parts);
        for _ in 0..parts {
            match self.alloc(owner) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    for h in &handles {
                        // Cannot fail: we hold them; ignore to return the first error.
                        let _ = self.release_one(h.index, owner);
                    }
                    return Err(match e {
                        SlabError::Exhausted { free, total, .. } => SlabError::Exhausted {
                            needed: parts,
                            free: free + handles.len(),
                            total,
                        },
                        other => other,
                    });
                }
            }
        }
        let mut chunks = bytes.chunks(self.buffer_size);
        for (k, h) in handles.iter().enumerate() {
            let chunk = chunks.next().unwrap_or(&[]);
            // SAFETY: we hold buffer `h.index` (allocated above, index < count), so nobody
            // else writes it; `chunk.len() <= buffer_size`; source and destination are
            // distinct memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    chunk.as_ptr(),
                    self.storage.data_ptr(h.index),
                    chunk.len(),
                );
            }
            let meta = self.meta(h.index);
            let next = handles
                .get(k + 1)
                .map_or(PageHandle::NIL_RAW, |n| n.to_raw());
            // Relaxed: published to the next holder by the ring's Release store of the
            // descriptor (or the owner-word handover).
            meta.len.store(chunk.len() as u32, Ordering::Relaxed);
            meta.chain_next.store(next, Ordering::Relaxed);
        }
        Ok(handles)
    }

    /// Walks a chain held by `holder`, checking every link, and calls `f` on each buffer's
    /// handle (as checked against the ledger) with its length. Stops at the first failure.
    fn walk(
        &self,
        raw: u64,
        total: u64,
        holder: Owner,
        mut f: impl FnMut(PageHandle, u32) -> Result<(), SlabError>,
    ) -> Result<(), SlabError> {
        let bad = |reason: String| SlabError::BadChain { holder, reason };
        let mut next = raw;
        let mut seen: u64 = 0;
        let mut hops: u32 = 0;
        loop {
            let Some(handle) = PageHandle::from_raw(next) else {
                return Err(bad(format!(
                    "chain ends after {seen} of {total} bytes ({hops} buffers)"
                )));
            };
            if hops >= self.count {
                return Err(bad(format!("chain longer than the slab ({hops} links)")));
            }
            hops += 1;
            self.check(handle, holder)?;
            let meta = self.meta(handle.index);
            // Relaxed: the buffer is held by `holder`, whose writes were published to us by
            // the descriptor's ring (Acquire on the tail) or the owner-word handover.
            let len = meta.len.load(Ordering::Relaxed);
            if len as usize > self.buffer_size {
                return Err(bad(format!(
                    "buffer {} claims {len} bytes, more than its {}",
                    handle.index, self.buffer_size
                )));
            }
            seen += len as u64;
            if seen > total {
                return Err(bad(format!(
                    "chain holds more than the {total} bytes named"
                )));
            }
            f(handle, len)?;
            // Relaxed: as for `len`.
            next = meta.chain_next.load(Ordering::Relaxed);
            if seen == total && next == PageHandle::NIL_RAW {
                return Ok(());
            }
            if seen == total && total > 0 {
                return Err(bad(format!("chain continues past the {total} bytes named")));
            }
        }
    }

    /// Moves a whole chain from `from` to `to` in the ledger, checking every link. The
    /// receiver calls this before reading a payload it was handed. On failure, buffers
    /// already moved go back to `from`. Returns the chain's buffers, in order.
    ///
    /// The links live in memory the sender may still write, so a receiver that keeps the
    /// chain keeps this list and reads and releases by it ([`Slab::read_handles`],
    /// [`Slab::release_handles`]): links rewritten afterwards cannot make it read or free
    /// buffers of another chain.
    pub fn claim_chain(
        &self,
        raw: u64,
        total: u64,
        from: Owner,
        to: Owner,
    ) -> Result<Vec<PageHandle>, SlabError> {
        // The handles as `walk` checked them: their generations are not reread from memory
        // the sender can still write. Each is pushed once moved, so a failure moves back
        // exactly these.
        let mut handles: Vec<PageHandle> = Vec::new();
        let result = self.walk(raw, total, from, |handle, _| {
            // AcqRel: SYNC POINT (buffer handover): Acquire makes the sender's writes to the
            // buffer visible to us; Release publishes ours to whoever takes it next.
            self.owner_word(handle.index)
                .compare_exchange(
                    from.encode(),
                    to.encode(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .map(|_| handles.push(handle))
                .map_err(|found| SlabError::NotOwner {
                    index: handle.index,
                    holder: from,
                    found: LedgerWord(found),
                })
        });
        if result.is_err() {
            for h in &handles {
                // AcqRel: SYNC POINT (buffer handover), back to the sender.
                let _ = self.owner_word(h.index).compare_exchange(
                    to.encode(),
                    from.encode(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
        }
        result.map(|()| handles)
    }

    /// The parts of a chain taken by [`Slab::claim_chain`], by its list: each buffer still
    /// held by `holder` at its generation, its length within the buffer, the lengths adding
    /// up to `total`.
    pub fn handle_segments(
        &self,
        handles: &[PageHandle],
        total: u64,
        holder: Owner,
    ) -> Result<Vec<&[u8]>, SlabError> {
        let mut parts = Vec::with_capacity(handles.len());
        let mut seen = 0u64;
        for &h in handles {
            self.check(h, holder)?;
            // Relaxed: as in `walk`; bounded below whatever its value.
            let len = self.meta(h.index).len.load(Ordering::Relaxed);
            if len as usize > self.buffer_size {
                return Err(SlabError::BadChain {
                    holder,
                    reason: format!("buffer {} claims {len} bytes", h.index),
                });
            }
            seen += u64::from(len);
            // `check` proved the index in range; `len` is bounded above.
            parts.push(self.part(h.index, len));
        }
        if seen != total {
            return Err(SlabError::BadChain {
                holder,
                reason: format!("the chain's buffers hold {seen} bytes, not the {total} named"),
            });
        }
        Ok(parts)
    }

    /// Copies out a chain by its list (see [`Slab::handle_segments`]).
    pub fn read_handles(
        &self,
        handles: &[PageHandle],
        total: u64,
        holder: Owner,
    ) -> Result<Vec<u8>, SlabError> {
        self.handle_segments(handles, total, holder)
            .map(|parts| parts.concat())
    }

    /// Releases the buffers of a list held by `holder` at their generations; returns how
    /// many were. Buffers no longer so held are left alone.
    pub fn release_handles(&self, handles: &[PageHandle], holder: Owner) -> usize {
        handles
            .iter()
            .filter(|&&h| self.release(h, holder).is_ok())
            .count()
    }

    /// Checks a chain held by `holder` and returns its parts as slices, without copying.
    ///
    /// The slices point into shared memory: they stay meaningful while `holder` keeps the
    /// buffers (a misbehaving agent that writes a buffer it no longer holds can change the
    /// bytes, never their bounds).
    pub fn segments(&self, raw: u64, total: u64, holder: Owner) -> Result<Vec<&[u8]>, SlabError> {
        let mut parts = Vec::new();
        self.walk(raw, total, holder, |handle, len| {
            parts.push(self.part(handle.index, len));
            Ok(())
        })?;
        Ok(parts)
    }

    /// The first `len` bytes of buffer `index`, which the caller has checked: `index <
    /// count`, `len <= buffer_size`.
    fn part(&self, index: u32, len: u32) -> &[u8] {
        debug_assert!(index < self.count && len as usize <= self.buffer_size);
        // SAFETY: the caller checked `index < count` and `len <= buffer_size`, so the range
        // lies inside buffer `index`, which the storage keeps alive as long as `self`.
        unsafe {
            std::slice::from_raw_parts(self.storage.data_ptr(index) as *const u8, len as usize)
        }
    }

    /// Checks a chain held by `holder` and copies its payload out.
    pub fn read_payload(&self, raw: u64, total: u64, holder: Owner) -> Result<Vec<u8>, SlabError> {
        self.segments(raw, total, holder)
            .map(|parts| parts.concat())
    }

    /// Releases every buffer of a chain held by `holder`. Returns how many were released.
    pub fn release_chain(&self, raw: u64, total: u64, holder: Owner) -> Result<usize, SlabError> {
        let mut indices = Vec::new();
        self.walk(raw, total, holder, |PageHandle { index, .. }, _| {
            indices.push(index);
            Ok(())
        })?;
        for &index in &indices {
            self.release_one(index, holder)?;
        }
        Ok(indices.len())
    }

    /// Releases every buffer the ledger records against `holder`: the recovery path when an
    /// agent has died. Returns how many were reclaimed.
    pub fn reclaim(&self, holder: Owner) -> usize {
        let want = holder.encode();
        let mut reclaimed = 0;
        for index in 0..self.count {
            // Relaxed: a pre-check; `release_one` does the CAS.
            if self.owner_word(index).load(Ordering::Relaxed) == want
                && self.release_one(index, holder).is_ok()
            {
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Frees what the ledger says is held by nobody who can let it go: words naming an
    /// agent slot at or past `slots`, and, among the supervisor's, the buffers
    /// `supervisor_holds` does not know (the words were written over: agents share the
    /// ledger). Returns how many were freed. Call it where no chain is being moved.
    pub fn sweep(&self, slots: u32, supervisor_holds: impl Fn(u32) -> bool) -> usize {
        let mut freed = 0;
        for index in 0..self.count {
            // Relaxed: a pre-check; `release_one` does the CAS.
            let word = self.owner_word(index).load(Ordering::Relaxed);
            let stray = match Owner::decode(word) {
                None => None,
                Some(Owner::Supervisor) => (!supervisor_holds(index)).then_some(Owner::Supervisor),
                Some(Owner::Agent(slot)) => (slot >= slots).then_some(Owner::Agent(slot)),
            };
            if let Some(holder) = stray {
                freed += usize::from(self.release_one(index, holder).is_ok());
            }
        }
        freed
    }

    /// Buffers currently held by `holder`.
    pub fn held_by(&self, holder: Owner) -> usize {
        self.count_word(holder.encode())
    }

    /// Free buffers.
    pub fn free_count(&self) -> usize {
        self.count_word(FREE)
    }

    fn count_word(&self, word: u32) -> usize {
        self.storage
            .owners()
            .iter()
            // Relaxed: a monitoring snapshot.
            .filter(|w| w.load(Ordering::Relaxed) == word)
            .count()
    }

    /// Allocations since the slab was created (all processes).
    pub fn total_allocs(&self) -> u64 {
        // Relaxed: monitoring counter.
        self.storage.control().allocs.load(Ordering::Relaxed)
    }
}

/// A slab on the heap, for tests, loom models and in-process benchmarks.
#[derive(Debug)]
pub struct HeapSlab {
    control: SlabControl,
    owners: Box<[AtomicU32]>,
    metas: Box<[BufferMeta]>,
    data: Box<[std::cell::UnsafeCell<u8>]>,
    buffer_size: usize,
}

// SAFETY: buffer bytes are accessed only by the ledger's current holder (see `Slab`).
unsafe impl Sync for HeapSlab {}

impl HeapSlab {
    /// `count` buffers of `buffer_size` bytes, all free.
    pub fn new(count: u32, buffer_size: usize) -> Self {
        assert!(count < u32::MAX);
        Self {
            control: SlabControl::default(),
            owners: (0..count).map(|_| AtomicU32::new(FREE)).collect(),
            metas: (0..count).map(|_| BufferMeta::default()).collect(),
            data: (0..count as usize * buffer_size)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
            buffer_size,
        }
    }
}

// SAFETY: the boxed slices are fixed at construction, of equal length below `u32::MAX`, and
// the data slice holds exactly `count * buffer_size` bytes.
unsafe impl SlabStorage for std::sync::Arc<HeapSlab> {
    fn control(&self) -> &SlabControl {
        &self.control
    }
    fn owners(&self) -> &[AtomicU32] {
        &self.owners
    }
    fn metas(&self) -> &[BufferMeta] {
        &self.metas
    }
    fn buffer_size(&self) -> usize {
        self.buffer_size
    }
    fn data_ptr(&self, index: u32) -> *mut u8 {
        self.data[index as usize * self.buffer_size].get()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn slab(count: u32, size: usize) -> Slab<Arc<HeapSlab>> {
        Slab::new(Arc::new(HeapSlab::new(count, size)), 0)
    }

    #[test]
    fn alloc_until_exhausted_then_release() {
        let s = slab(4, 64);
        let hs: Vec<_> = (0..4).map(|_| s.alloc(Owner::Agent(0)).unwrap()).collect();
        assert!(matches!(
            s.alloc(Owner::Agent(0)),
            Err(SlabError::Exhausted { .. })
        ));
        assert_eq!(s.held_by(Owner::Agent(0)), 4);
        for h in hs {
            s.release(h, Owner::Agent(0)).unwrap();
        }
        assert_eq!(s.free_count(), 4);
    }

    #[test]
    fn stale_handle_is_detected() {
        let s = slab(1, 64);
        let h = s.alloc(Owner::Supervisor).unwrap();
        s.release(h, Owner::Supervisor).unwrap();
        let h2 = s.alloc(Owner::Supervisor).unwrap();
        assert_eq!(h.index, h2.index);
        assert_ne!(h.generation, h2.generation);
        assert!(matches!(
            s.release(h, Owner::Supervisor),
            Err(SlabError::BadHandle {
                reason: "stale generation",
                ..
            })
        ));
    }

    /// The links of a chain live in memory its writer can still write: rewritten after the
    /// receiver took the chain, they cannot make it read or free another chain's buffers,
    /// since it reads and frees by the list it took.
    #[test]
    fn a_taken_chain_is_read_and_freed_by_its_list_not_its_links() {
        let s = slab(8, 16);
        let other = s.write_payload(Owner::Supervisor, &[7u8; 40]).unwrap();
        let payload: Vec<u8> = (0..40u8).collect();
        let h = s.write_payload(Owner::Agent(1), &payload).unwrap();
        let taken = s
            .claim_chain(h.to_raw(), 40, Owner::Agent(1), Owner::Supervisor)
            .unwrap();
        assert_eq!(taken.len(), 3);
        // The writer points its first buffer at the other chain.
        s.meta(h.index)
            .chain_next
            .store(other.to_raw(), Ordering::Relaxed);
        assert_eq!(
            s.read_handles(&taken, 40, Owner::Supervisor).unwrap(),
            payload
        );
        assert_eq!(s.release_handles(&taken, Owner::Supervisor), 3);
        // The other chain is whole and still held.
        assert_eq!(s.held_by(Owner::Supervisor), 3);
        assert_eq!(
            s.read_payload(other.to_raw(), 40, Owner::Supervisor)
                .unwrap(),
            vec![7u8; 40]
        );
        // A stale list (its buffers freed) frees nothing more.
        assert_eq!(s.release_handles(&taken, Owner::Supervisor), 0);
        assert!(s.read_handles(&taken, 40, Owner::Supervisor).is_err());
    }

    /// Words written over (a slot that does not exist, the supervisor for a buffer it does
    /// not hold) are swept free; real holders keep theirs.
    #[test]
    fn sweep_frees_stray_words_only() {
        let s = slab(8, 16);
        let kept = s.write_payload(Owner::Supervisor, &[1; 16]).unwrap();
        let agents = s.write_payload(Owner::Agent(1), &[2; 16]).unwrap();
        let stray = s.write_payload(Owner::Supervisor, &[3; 16]).unwrap();
        let bogus = s.alloc(Owner::Agent(0)).unwrap();
        s.owner_word(bogus.index)
            .store(Owner::Agent(40).encode(), Ordering::Relaxed);
        assert_eq!(s.sweep(2, |i| i == kept.index), 2);
        assert_eq!(s.free_count(), 6);
        assert!(s.check(kept, Owner::Supervisor).is_ok());
        assert!(s.check(agents, Owner::Agent(1)).is_ok());
        assert!(s.check(stray, Owner::Supervisor).is_err());
    }

    #[test]
    fn chain_round_trip_and_claim() {
        let s = slab(8, 16);
        let payload: Vec<u8> = (0..100u8).collect();
        let h = s.write_payload(Owner::Agent(3), &payload).unwrap();
        assert_eq!(s.held_by(Owner::Agent(3)), 7);
        s.claim_chain(h.to_raw(), 100, Owner::Agent(3), Owner::Supervisor)
            .unwrap();
        assert_eq!(s.held_by(Owner::Agent(3)), 0);
        assert_eq!(
            s.read_payload(h.to_raw(), 100, Owner::Supervisor).unwrap(),
            payload
        );
        // Wrong length named by the descriptor.
        assert!(s.read_payload(h.to_raw(), 99, Owner::Supervisor).is_err());
        assert!(s.read_payload(h.to_raw(), 101, Owner::Supervisor).is_err());
        assert_eq!(
            s.release_chain(h.to_raw(), 100, Owner::Supervisor).unwrap(),
            7
        );
        assert_eq!(s.free_count(), 8);
    }

    #[test]
    fn empty_payload_uses_one_buffer() {
        let s = slab(2, 16);
        let h = s.write_payload(Owner::Supervisor, &[]).unwrap();
        assert_eq!(
            s.read_payload(h.to_raw(), 0, Owner::Supervisor).unwrap(),
            b""
        );
        assert_eq!(
            s.release_chain(h.to_raw(), 0, Owner::Supervisor).unwrap(),
            1
        );
    }

    #[test]
    fn failed_claim_rolls_back() {
        let s = slab(4, 8);
        let h = s.write_payload(Owner::Agent(1), &[7u8; 24]).unwrap();
        // Steal the last link so the walk fails midway.
        let third = s.storage().metas()[h.index as usize]
            .chain_next
            .load(Ordering::Relaxed);
        let third = PageHandle::from_raw(third).unwrap();
        let third = s.storage().metas()[third.index as usize]
            .chain_next
            .load(Ordering::Relaxed);
        let third = PageHandle::from_raw(third).unwrap();
        s.storage().owners()[third.index as usize]
            .store(Owner::Agent(9).encode(), Ordering::Relaxed);
        assert!(s
            .claim_chain(h.to_raw(), 24, Owner::Agent(1), Owner::Supervisor)
            .is_err());
        assert_eq!(s.held_by(Owner::Agent(1)), 2);
        assert_eq!(s.held_by(Owner::Supervisor), 0);
    }

    #[test]
    fn cyclic_chain_is_bounded() {
        let s = slab(2, 8);
        let h = s.write_payload(Owner::Agent(0), &[1u8; 16]).unwrap();
        let second = PageHandle::from_raw(
            s.storage().metas()[h.index as usize]
                .chain_next
                .load(Ordering::Relaxed),
        )
        .unwrap();
        // Point the second link back at the first: a cycle.
        s.storage().metas()[second.index as usize]
            .chain_next
            .store(h.to_raw(), Ordering::Relaxed);
        s.storage().metas()[second.index as usize]
            .len
            .store(0, Ordering::Relaxed);
        assert!(matches!(
            s.read_payload(h.to_raw(), 16, Owner::Agent(0)),
            Err(SlabError::BadChain { .. })
        ));
    }

    #[test]
    fn reclaim_takes_exactly_the_dead_agents_buffers() {
        let s = slab(10, 8);
        for _ in 0..3 {
            s.alloc(Owner::Agent(1)).unwrap();
        }
        for _ in 0..4 {
            s.alloc(Owner::Agent(2)).unwrap();
        }
        s.alloc(Owner::Supervisor).unwrap();
        assert_eq!(s.reclaim(Owner::Agent(1)), 3);
        assert_eq!(s.held_by(Owner::Agent(2)), 4);
        assert_eq!(s.held_by(Owner::Supervisor), 1);
        assert_eq!(s.free_count(), 5);
    }
}
