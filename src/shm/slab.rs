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
//! scanning the ledger ([`Slab::reclaim`]). The dense owner array keeps a scan at 16 buffers
//! per cache line.
//!
//! # Pools by owner
//!
//! Buffers are numbered in one index space split into *pools* ([`SlabStorage::pool`]): an
//! owner allocates only from its own pool, and an agent may hold only buffers of its own
//! pool (a handle outside it is refused, whatever the ledger says). In the segment each
//! pool lives in its owner's file, so an agent can write its own buffers and no other's;
//! the supervisor takes an agent's buffers over only to copy them out. A pool one process
//! allocates from is best scanned from its first buffer ([`Slab::lowest_first`]), which
//! keeps the pages it touches to its peak use; a shared one from a cursor per process.
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
//! An agent can write its own pool, ledger included. Every handle, length, link and owner
//! read from the segment is checked before it is used: indices against the index space,
//! the pools this process maps and the holder's pool, generations against the ledger,
//! lengths against the buffer size and the descriptor's total, chain walks against a hop
//! limit. A failed check is a [`SlabError`], never a panic or
//! an out-of-bounds access.
//!
//! Ownership moves between parties with [`Slab::claim_chain`]: the receiver changes the owner
//! words from the sender to itself before using the buffers, so that a sender that dies
//! afterwards cannot have them reclaimed from under the receiver.

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

/// One buffer's words and bytes, as its storage finds them.
#[derive(Debug, Clone, Copy)]
pub struct BufferRef<'a> {
    /// Its owner word in the ledger.
    pub owner: &'a AtomicU32,
    /// Its metadata.
    pub meta: &'a BufferMeta,
    /// Its first byte; `buffer_size()` bytes follow.
    pub data: *mut u8,
}

/// Where a slab's ledger and buffers live.
///
/// Buffers are numbered in one index space below [`SlabStorage::count`], split into
/// *pools*: the buffers an owner allocates from ([`SlabStorage::pool`]). A storage may map
/// only some pools in this process (an agent maps its own and the supervisor's); the others
/// are not found.
///
/// # Safety
///
/// `count()` must be the same on every call, below `u32::MAX`; `locate(i)` must return
/// `None` for `i >= count()`, and otherwise, when it finds the buffer, words and `data`
/// pointing to `buffer_size()` bytes that stay valid as long as the storage lives and do not
/// overlap another buffer's; `pool(owner)` must lie below `count()`, be the same on every
/// call, and every index in it must be found with words this process may write (a pool
/// mapped read-only here is not anyone's pool in this view).
pub unsafe trait SlabStorage {
    /// Buffers in the index space, mapped here or not.
    fn count(&self) -> u32;
    /// Bytes per buffer.
    fn buffer_size(&self) -> usize;
    /// Buffer `index`, or `None` when there is no such buffer in this process's view.
    fn locate(&self, index: u32) -> Option<BufferRef<'_>>;
    /// The buffers `owner` allocates from. An agent may hold only buffers of its own pool;
    /// the supervisor takes buffers of any pool over when it claims a chain.
    fn pool(&self, owner: Owner) -> std::ops::Range<u32>;
}

/// What went wrong with a slab operation. Errors about data read from the segment name the
/// holder that was expected to own it, so the layer above can blame the right agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlabError {
    /// No free buffer for the request.
    #[error("page-buffer pool exhausted: {needed} buffer(s) needed, {free} free of {total}")]
    Exhausted {
        /// Buffers the request needed.
        needed: usize,
        /// Buffers free at the time of the scan.
        free: usize,
        /// Buffers in the pool.
        total: usize,
    },
    /// A payload longer than the whole pool.
    #[error("payload of {len} bytes exceeds the pool's {max} bytes")]
    TooLarge {
        /// Requested length.
        len: u64,
        /// What the pool could hold if empty.
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
    /// Where this process's next free-buffer scan starts, from the start of its pool.
    /// Process-local.
    cursor: AtomicU32,
    /// Whether scans go on from the last allocation (spreading processes that share a pool)
    /// or always start at the pool's first buffer (touching as few pages as the peak use).
    rotate: bool,
}

impl<S: SlabStorage> Slab<S> {
    /// A view of the slab in `storage`; `start` spreads the scans of different processes.
    pub fn new(storage: S, start: u32) -> Self {
        let count = storage.count();
        let buffer_size = storage.buffer_size();
        Self {
            storage,
            count,
            buffer_size,
            cursor: AtomicU32::new(start),
            rotate: true,
        }
    }

    /// This view allocates the lowest free buffers of its pool first, so a pool that one
    /// process allocates from touches only as many pages as it ever had in use at once.
    pub fn lowest_first(mut self) -> Self {
        self.rotate = false;
        self
    }

    /// Buffers in the whole index space (every pool).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Buffers in the pool `owner` allocates from.
    pub fn capacity(&self, owner: Owner) -> u32 {
        let p = self.storage.pool(owner);
        p.end.saturating_sub(p.start)
    }

    /// Bytes per buffer.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// The underlying storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Buffer `index`'s owner word and metadata, where this process maps it. Any process
    /// that maps a pool writable can write these; tests use this to play a misbehaving
    /// agent.
    pub fn words(&self, index: u32) -> Option<(&AtomicU32, &BufferMeta)> {
        self.storage.locate(index).map(|b| (b.owner, b.meta))
    }

    /// Allocates one buffer of `owner`'s pool for `owner`. Lock-free: one CAS on success, a
    /// bounded scan of the pool's ledger to find a candidate.
    pub fn alloc(&self, owner: Owner) -> Result<PageHandle, SlabError> {
        let pool = self.storage.pool(owner);
        let n = pool.end.saturating_sub(pool.start);
        // Relaxed: the cursor is a process-local hint; any value is correct.
        let start = if self.rotate && n > 0 {
            self.cursor.load(Ordering::Relaxed) % n
        } else {
            0
        };
        let want = owner.encode();
        for step in 0..n {
            let mut k = start + step;
            if k >= n {
                k -= n;
            }
            let i = pool.start + k;
            let Some(b) = self.storage.locate(i) else {
                continue;
            };
            // Relaxed: a pre-check to skip held buffers; the CAS below decides.
            if b.owner.load(Ordering::Relaxed) != FREE {
                continue;
            }
            // Acquire: SYNC POINT (buffer released): the previous holder's writes to the
            // buffer and its metadata (generation bump) happen before ours; pairs with the
            // Release in `release_one`. Relaxed on failure: the word is only skipped.
            if b.owner
                .compare_exchange(FREE, want, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                if self.rotate {
                    // Relaxed: process-local hint.
                    self.cursor.store(k + 1, Ordering::Relaxed);
                }
                // Relaxed: we own the buffer now; nobody else may touch its metadata, and
                // the handover to the next holder is ordered by the owner word.
                b.meta.len.store(0, Ordering::Relaxed);
                b.meta
                    .chain_next
                    .store(PageHandle::NIL_RAW, Ordering::Relaxed);
                // Relaxed: synchronized by the Acquire CAS on the owner word above.
                let generation = b.meta.generation.load(Ordering::Relaxed);
                return Ok(PageHandle {
                    index: i,
                    generation,
                });
            }
        }
        Err(SlabError::Exhausted {
            needed: 1,
            free: self.free_in(owner),
            total: n as usize,
        })
    }

    /// Checks a handle against the ledger: a buffer this process maps, in the holder's pool
    /// if the holder is an agent, at its current generation, held by `holder`. Returns the
    /// buffer.
    fn checked(&self, handle: PageHandle, holder: Owner) -> Result<BufferRef<'_>, SlabError> {
        let bad = |reason| SlabError::BadHandle {
            raw: handle.to_raw(),
            holder,
            reason,
        };
        let Some(b) = self.storage.locate(handle.index) else {
            return Err(bad("no such buffer in this process's view"));
        };
        if matches!(holder, Owner::Agent(_)) && !self.storage.pool(holder).contains(&handle.index) {
            return Err(bad("outside the holder's own pool"));
        }
        // Relaxed: we only compare; the owner word below decides who may act.
        if b.meta.generation.load(Ordering::Relaxed) != handle.generation {
            return Err(bad("stale generation"));
        }
        // Relaxed: a check; callers that act on the buffer then CAS the owner word.
        let found = b.owner.load(Ordering::Relaxed);
        if found != holder.encode() {
            return Err(SlabError::NotOwner {
                index: handle.index,
                holder,
                found: LedgerWord(found),
            });
        }
        Ok(b)
    }

    /// Checks a handle against the ledger (see [`Slab::claim_chain`] for who may hold what).
    pub fn check(&self, handle: PageHandle, holder: Owner) -> Result<(), SlabError> {
        self.checked(handle, holder).map(drop)
    }

    /// Releases a buffer held by `holder` (not the rest of its chain).
    pub fn release(&self, handle: PageHandle, holder: Owner) -> Result<(), SlabError> {
        let b = self.checked(handle, holder)?;
        Self::release_one(b, handle.index, holder)
    }

    fn release_one(b: BufferRef<'_>, index: u32, holder: Owner) -> Result<(), SlabError> {
        // Relaxed: ordered before the owner word's Release below.
        b.meta.generation.fetch_add(1, Ordering::Relaxed);
        // Release: SYNC POINT (buffer released): our writes to the buffer and the generation
        // bump are visible to the next allocator; pairs with the Acquire CAS in `alloc`.
        // Relaxed on failure: the word found is only reported.
        b.owner
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

    /// Releases buffer `index` if the ledger records it against `holder`; whether it did.
    fn release_if_held(&self, index: u32, holder: Owner) -> bool {
        self.storage.locate(index).is_some_and(|b| {
            // Relaxed: a pre-check; `release_one` does the CAS.
            b.owner.load(Ordering::Relaxed) == holder.encode()
                && Self::release_one(b, index, holder).is_ok()
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
        self.write_parts(owner, &[bytes])
    }

    /// As [`Slab::write_payload_handles`], for a payload given in parts (copied one after
    /// the other into the chain, without first joining them).
    pub fn write_parts(&self, owner: Owner, parts: &[&[u8]]) -> Result<Vec<PageHandle>, SlabError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = total as u64;
        let max = u64::from(self.capacity(owner)) * self.buffer_size as u64;
        if len > max {
            return Err(SlabError::TooLarge { len, max });
        }
        let count = total.div_ceil(self.buffer_size).max(1);
        let mut handles: Vec<PageHandle> = Vec::with_capacity(count);
        for _ in 0..count {
            match self.alloc(owner) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    for h in &handles {
                        // Cannot fail: we hold them; ignore to return the first error.
                        self.release_if_held(h.index, owner);
                    }
                    return Err(match e {
                        SlabError::Exhausted { free, total, .. } => SlabError::Exhausted {
                            needed: count,
                            free: free + handles.len(),
                            total,
                        },
                        other => other,
                    });
                }
            }
        }
        let mut source = parts.iter().flat_map(|p| p.chunks(self.buffer_size));
        let mut pending: &[u8] = &[];
        for (k, h) in handles.iter().enumerate() {
            let b = self
                .storage
                .locate(h.index)
                .expect("allocated from a mapped pool");
            // Fill this buffer from the parts, across part boundaries.
            let mut used = 0usize;
            while used < self.buffer_size {
                if pending.is_empty() {
                    match source.next() {
                        Some(c) => pending = c,
                        None => break,
                    }
                }
                let take = pending.len().min(self.buffer_size - used);
                // SAFETY: we hold buffer `h.index` (allocated above), so nobody else writes
                // it; `used + take <= buffer_size`; source and destination are distinct.
                unsafe {
                    std::ptr::copy_nonoverlapping(pending.as_ptr(), b.data.add(used), take);
                }
                used += take;
                pending = &pending[take..];
            }
            let next = handles
                .get(k + 1)
                .map_or(PageHandle::NIL_RAW, |n| n.to_raw());
            // Relaxed: published to the next holder by the ring's Release store of the
            // descriptor (or the owner-word handover).
            b.meta.len.store(used as u32, Ordering::Relaxed);
            b.meta.chain_next.store(next, Ordering::Relaxed);
        }
        Ok(handles)
    }

    /// Walks a chain held by `holder`, checking every link, and calls `f` on each buffer's
    /// handle (as checked against the ledger), the buffer and its length. Stops at the
    /// first failure.
    fn walk<'s>(
        &'s self,
        raw: u64,
        total: u64,
        holder: Owner,
        mut f: impl FnMut(PageHandle, BufferRef<'s>, u32) -> Result<(), SlabError>,
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
            let b = self.checked(handle, holder)?;
            // Relaxed: the buffer is held by `holder`, whose writes were published to us by
            // the descriptor's ring (Acquire on the tail) or the owner-word handover.
            let len = b.meta.len.load(Ordering::Relaxed);
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
            // Relaxed: as for `len`.
            next = b.meta.chain_next.load(Ordering::Relaxed);
            f(handle, b, len)?;
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
    /// An agent may hold buffers of its own pool only, so a chain claimed from an agent is
    /// all in that agent's pool. The links live in memory the sender may still write, so a
    /// receiver that keeps the chain keeps this list and reads and releases by it
    /// ([`Slab::read_handles`], [`Slab::release_handles`]): links rewritten afterwards
    /// cannot make it read or free buffers of another chain.
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
        let result = self.walk(raw, total, from, |handle, b, _| {
            // AcqRel: SYNC POINT (buffer handover). The sender's writes reach us through the
            // ring ("slots written", Acquire on its tail); Acquire here also pairs with the
            // Release of `release_one` ("buffer released") for a buffer freed and taken
            // again, and Release publishes ours to the next holder's Acquire in `alloc` or
            // here. Relaxed on failure: the word found is only reported.
            b.owner
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
                if let Some(b) = self.storage.locate(h.index) {
                    // AcqRel: SYNC POINT (buffer handover), back to the sender, as above.
                    // Relaxed on failure: a word changed meanwhile is left as it is.
                    let _ = b.owner.compare_exchange(
                        to.encode(),
                        from.encode(),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
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
            let b = self.checked(h, holder)?;
            // Relaxed: as in `walk`; bounded below whatever its value.
            let len = b.meta.len.load(Ordering::Relaxed);
            if len as usize > self.buffer_size {
                return Err(SlabError::BadChain {
                    holder,
                    reason: format!("buffer {} claims {len} bytes", h.index),
                });
            }
            seen += u64::from(len);
            parts.push(self.part(b, len));
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
    /// buffers (a process that can write a buffer's pool can change its bytes, never their
    /// bounds).
    pub fn segments(&self, raw: u64, total: u64, holder: Owner) -> Result<Vec<&[u8]>, SlabError> {
        let mut parts = Vec::new();
        self.walk(raw, total, holder, |_, b, len| {
            parts.push(self.part(b, len));
            Ok(())
        })?;
        Ok(parts)
    }

    /// The first `len` bytes of buffer `b`, where the caller has checked `len <=
    /// buffer_size`.
    fn part<'a>(&'a self, b: BufferRef<'a>, len: u32) -> &'a [u8] {
        debug_assert!(len as usize <= self.buffer_size);
        // SAFETY: `b` was located by the storage, so `data` points to `buffer_size` bytes
        // that live as long as `self`; the caller checked `len <= buffer_size`.
        unsafe { std::slice::from_raw_parts(b.data as *const u8, len as usize) }
    }

    /// Checks a chain held by `holder` and copies its payload out.
    pub fn read_payload(&self, raw: u64, total: u64, holder: Owner) -> Result<Vec<u8>, SlabError> {
        self.segments(raw, total, holder)
            .map(|parts| parts.concat())
    }

    /// Releases every buffer of a chain held by `holder`. Returns how many were released.
    pub fn release_chain(&self, raw: u64, total: u64, holder: Owner) -> Result<usize, SlabError> {
        let mut indices = Vec::new();
        self.walk(raw, total, holder, |PageHandle { index, .. }, _, _| {
            indices.push(index);
            Ok(())
        })?;
        for &index in &indices {
            if let Some(b) = self.storage.locate(index) {
                Self::release_one(b, index, holder)?;
            }
        }
        Ok(indices.len())
    }

    /// Releases every buffer of `holder`'s pool that the ledger records against `holder`:
    /// the recovery path when an agent has died. Returns how many were reclaimed.
    pub fn reclaim(&self, holder: Owner) -> usize {
        self.storage
            .pool(holder)
            .filter(|&index| self.release_if_held(index, holder))
            .count()
    }

    /// Frees what the ledger says is held by nobody who can let it go: words naming an
    /// agent slot at or past `slots`, or an agent outside whose pool the buffer lies, and,
    /// among the supervisor's, the buffers `supervisor_holds` does not know (the words were
    /// written over by the agent whose pool it is). Returns how many were freed. Call it
    /// where no chain is being moved.
    pub fn sweep(&self, slots: u32, supervisor_holds: impl Fn(u32) -> bool) -> usize {
        let mut freed = 0;
        for index in 0..self.count {
            let Some(b) = self.storage.locate(index) else {
                continue;
            };
            // Relaxed: a pre-check; `release_one` does the CAS.
            let word = b.owner.load(Ordering::Relaxed);
            let stray = match Owner::decode(word) {
                None => None,
                Some(Owner::Supervisor) => (!supervisor_holds(index)).then_some(Owner::Supervisor),
                Some(agent @ Owner::Agent(slot)) => {
                    (slot >= slots || !self.storage.pool(agent).contains(&index)).then_some(agent)
                }
            };
            if let Some(holder) = stray {
                freed += usize::from(Self::release_one(b, index, holder).is_ok());
            }
        }
        freed
    }

    /// Buffers currently held by `holder`, in every pool this process maps.
    pub fn held_by(&self, holder: Owner) -> usize {
        self.count_word(0..self.count, holder.encode())
    }

    /// Free buffers, in every pool this process maps.
    pub fn free_count(&self) -> usize {
        self.count_word(0..self.count, FREE)
    }

    /// Free buffers in the pool `owner` allocates from.
    pub fn free_in(&self, owner: Owner) -> usize {
        self.count_word(self.storage.pool(owner), FREE)
    }

    fn count_word(&self, indices: std::ops::Range<u32>, word: u32) -> usize {
        indices
            .filter_map(|i| self.storage.locate(i))
            // Relaxed: a monitoring snapshot.
            .filter(|b| b.owner.load(Ordering::Relaxed) == word)
            .count()
    }
}

/// A slab on the heap, for tests, loom models and in-process benchmarks: one pool that
/// every owner shares.
#[derive(Debug)]
pub struct HeapSlab {
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
// the data slice holds exactly `count * buffer_size` bytes; every index below the count is
// found, and the one pool is all of them.
unsafe impl SlabStorage for std::sync::Arc<HeapSlab> {
    fn count(&self) -> u32 {
        self.owners.len() as u32
    }
    fn buffer_size(&self) -> usize {
        self.buffer_size
    }
    fn locate(&self, index: u32) -> Option<BufferRef<'_>> {
        let i = index as usize;
        Some(BufferRef {
            owner: self.owners.get(i)?,
            meta: &self.metas[i],
            data: self.data[i * self.buffer_size..].as_ptr() as *mut u8,
        })
    }
    fn pool(&self, _: Owner) -> std::ops::Range<u32> {
        0..self.count()
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
        s.words(h.index)
            .unwrap()
            .1
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
        s.words(bogus.index)
            .unwrap()
            .0
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
        let third = s
            .words(h.index)
            .unwrap()
            .1
            .chain_next
            .load(Ordering::Relaxed);
        let third = PageHandle::from_raw(third).unwrap();
        let third = s
            .words(third.index)
            .unwrap()
            .1
            .chain_next
            .load(Ordering::Relaxed);
        let third = PageHandle::from_raw(third).unwrap();
        s.words(third.index)
            .unwrap()
            .0
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
            s.words(h.index)
                .unwrap()
                .1
                .chain_next
                .load(Ordering::Relaxed),
        )
        .unwrap();
        // Point the second link back at the first: a cycle.
        s.words(second.index)
            .unwrap()
            .1
            .chain_next
            .store(h.to_raw(), Ordering::Relaxed);
        s.words(second.index)
            .unwrap()
            .1
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
