//! Where a held output's bytes are: a chain of page buffers, or, for a small one, the
//! supervisor's own memory.

use super::error::Error;
use crate::runtime::task::flags;
use crate::shm::segment::SegmentSlab;
use crate::shm::slab::{Owner, PageHandle, Slab};

/// Where a held output's bytes are.
#[derive(Debug)]
pub(super) enum Stored {
    /// A chain of page buffers of the supervisor's own pool, which agents can only read.
    /// Never empty: a chain has at least one buffer.
    Chain {
        /// Its length.
        len: u64,
        /// Its buffers, in order, as taken: read and freed by this list, never by the
        /// links in shared memory, which the writer could change afterwards.
        handles: Vec<PageHandle>,
    },
    /// Bytes in the supervisor's memory.
    Inline(Vec<u8>),
}

impl Stored {
    /// Keeps the bytes of `parts` (joined): a small output inline; a larger one in the
    /// supervisor's pool while that leaves half of the pool free for lent payloads, else in
    /// the supervisor's memory (lent again, like any inline input, when it is used). Never
    /// waits: the output's writer is done with it.
    pub(super) fn keep_parts(slab: &Slab<SegmentSlab>, parts: &[&[u8]]) -> Stored {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let bs = slab.buffer_size();
        let half = slab.capacity(Owner::Supervisor) as usize / 2;
        if len > Self::inline_max(bs) && slab.free_in(Owner::Supervisor) >= len.div_ceil(bs) + half
        {
            if let Ok(handles) = slab.write_parts(Owner::Supervisor, parts) {
                return Stored::Chain {
                    len: len as u64,
                    handles,
                };
            }
        }
        Stored::Inline(parts.concat())
    }

    /// The most bytes kept inline for slabs of `buffer_size`-byte buffers: a quarter of a
    /// buffer, at most 4 KiB.
    pub(super) fn inline_max(buffer_size: usize) -> usize {
        (buffer_size / 4).min(4096)
    }

    /// Its length in bytes.
    pub(super) fn len(&self) -> u64 {
        match self {
            Stored::Chain { len, .. } => *len,
            Stored::Inline(b) => b.len() as u64,
        }
    }

    /// Page buffers it takes.
    pub(super) fn buffers(&self) -> usize {
        match self {
            Stored::Chain { handles, .. } => handles.len(),
            Stored::Inline(_) => 0,
        }
    }

    /// Bytes it adds to an input list ([`flags::INPUT_LIST`]).
    pub(super) fn list_bytes(&self) -> usize {
        match self {
            Stored::Chain { .. } => 16,
            Stored::Inline(b) => 16 + b.len().next_multiple_of(8),
        }
    }

    /// Bytes lent to the agent for a task with these held inputs, or with a payload of
    /// `payload` bytes when it has none: nothing when one chain goes as it is, one
    /// input's own bytes when it is inline, the input list when there are several.
    pub(super) fn lent_len<'a>(
        payload: usize,
        mut inputs: impl ExactSizeIterator<Item = &'a Stored>,
    ) -> usize {
        match inputs.len() {
            0 => payload,
            1 => match inputs.next() {
                Some(Stored::Inline(b)) => b.len(),
                _ => 0,
            },
            _ => inputs.map(Stored::list_bytes).sum(),
        }
    }

    /// Appends its entry to an input list.
    pub(super) fn write_list_entry(&self, list: &mut Vec<u8>) {
        match self {
            Stored::Chain { len, handles } => {
                list.extend_from_slice(&handles[0].to_raw().to_ne_bytes());
                list.extend_from_slice(&len.to_ne_bytes());
            }
            Stored::Inline(b) => {
                list.extend_from_slice(&flags::INLINE_INPUT.to_ne_bytes());
                list.extend_from_slice(&(b.len() as u64).to_ne_bytes());
                list.extend_from_slice(b);
                list.resize(list.len().next_multiple_of(8), 0);
            }
        }
    }

    /// Its bytes, copied out of the slab if they are there, and its buffers freed.
    pub(super) fn into_bytes(self, slab: &Slab<SegmentSlab>) -> Result<Vec<u8>, Error> {
        match self {
            Stored::Chain { len, handles, .. } => {
                let bytes = slab.read_handles(&handles, len, Owner::Supervisor);
                slab.release_handles(&handles, Owner::Supervisor);
                Ok(bytes?)
            }
            Stored::Inline(b) => Ok(b),
        }
    }

    /// Frees its buffers.
    pub(super) fn release(self, slab: &Slab<SegmentSlab>) {
        if let Stored::Chain { handles, .. } = self {
            slab.release_handles(&handles, Owner::Supervisor);
        }
    }
}
