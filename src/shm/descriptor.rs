//! The fixed-size task descriptor that travels through rings.
//!
//! A descriptor names a task, the attempt it belongs to, what to do, and (optionally) the
//! page buffer chain that carries its data. Everything in it is an integer; whoever reads a
//! descriptor from a ring checks the fields it uses (see [`crate::shm::slab::Slab::claim_chain`]
//! for the buffer fields).

use crate::shm::plain::Plain;
use crate::shm::slab::PageHandle;

/// One task (supervisor to agent) or one completion (agent to supervisor).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Descriptor {
    /// The task this descriptor is about.
    pub task_id: u64,
    /// Attempt epoch: raised each time the task is reassigned, so a late completion from an
    /// earlier attempt can be recognised and discarded.
    pub attempt: u32,
    /// What to do (a task kind) or what happened (a completion status); interpreted by the
    /// layers above.
    pub kind: u32,
    /// First page buffer of the payload chain, as [`PageHandle::to_raw`], or
    /// [`PageHandle::NIL_RAW`].
    pub buffer: u64,
    /// Payload length in bytes across the whole chain.
    pub len: u64,
    /// A kind-specific argument (a duration, a page number, a size).
    pub arg: u64,
    /// A second kind-specific argument (a page range end, a result length).
    pub arg2: u32,
    /// Flags, interpreted by the layers above.
    pub flags: u32,
}

const _: () = assert!(std::mem::size_of::<Descriptor>() == 48);
const _: () = assert!(std::mem::align_of::<Descriptor>() == 8);

// SAFETY: `repr(C)`, integer fields only, no padding (8+4+4+8+8+8+4+4 = 48, all naturally
// aligned).
unsafe impl Plain for Descriptor {}

impl Descriptor {
    /// A descriptor with no payload.
    pub fn new(task_id: u64, attempt: u32, kind: u32) -> Self {
        Self {
            task_id,
            attempt,
            kind,
            buffer: PageHandle::NIL_RAW,
            ..Self::default()
        }
    }

    /// The payload's first buffer, if the descriptor names one.
    pub fn payload(&self) -> Option<u64> {
        (self.buffer != PageHandle::NIL_RAW).then_some(self.buffer)
    }
}
