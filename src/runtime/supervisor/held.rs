//! Outputs kept for the caller, to be read or handed to later tasks as inputs.
//!
//! An output of a few KiB does not keep a page buffer (64 KiB by default) for itself: it
//! is copied into the supervisor's memory when its task completes ([`Stored::Inline`]),
//! and travels inline in the input list of the task it feeds. A larger output is copied
//! once, out of the pool of the agent that wrote it (which that agent can write for as
//! long as it lives) into the supervisor's pool ([`Stored::Chain`]), which agents map
//! read-only: the next stage reads it there without a copy, and no agent can change it.

use super::error::Error;
use super::state::{Shared, State};
use super::stored::Stored;
use super::Supervisor;
use crate::runtime::task::{Held, ReleaseHeld};
use crate::shm::slab::Owner;

impl State {
    /// Keeps `stored` for the caller under a new token.
    pub(super) fn keep(&mut self, stored: Stored) -> Held {
        let token = self.next_held;
        self.next_held += 1;
        let len = stored.len();
        self.held.insert(token, stored);
        Held {
            id: token,
            len,
            owner: Some(self.owner.clone()),
        }
    }
}

impl ReleaseHeld for Shared {
    fn release_held(&self, id: u64) {
        let mut st = self.state.lock();
        if let Some(stored) = st.held.remove(&id) {
            stored.release(&st.slab);
        }
    }
}

impl Supervisor {
    /// Places `bytes` in the supervisor's keeping like an output: a small input to go
    /// beside outputs in a fan-in ([`Input::Held`](crate::runtime::task::Input::Held)).
    pub fn hold(&self, bytes: &[u8]) -> Result<Held, Error> {
        let mut st = self.shared.state.lock();
        let stored = Stored::keep_parts(&st.slab, &[bytes]);
        Ok(st.keep(stored))
    }

    /// Copies a held output out and frees it.
    pub fn take_held(&self, h: Held) -> Result<Vec<u8>, Error> {
        let id = h.defuse();
        let mut st = self.shared.state.lock();
        let stored = st.held.remove(&id).ok_or(Error::UnknownHeld)?;
        stored.into_bytes(&st.slab)
    }

    /// Copies the first `n` bytes of a held output, which stays held.
    pub fn peek_held(&self, h: &Held, n: usize) -> Result<Vec<u8>, Error> {
        let st = self.shared.state.lock();
        match st.held.get(&h.id).ok_or(Error::UnknownHeld)? {
            Stored::Inline(b) => Ok(b[..n.min(b.len())].to_vec()),
            Stored::Chain { len, handles, .. } => {
                let parts = st.slab.handle_segments(handles, *len, Owner::Supervisor)?;
                let mut out = Vec::with_capacity(n.min(*len as usize));
                for p in parts {
                    let take = (n - out.len()).min(p.len());
                    out.extend_from_slice(&p[..take]);
                    if out.len() == n {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }

    /// Frees a held output now (as dropping it does), saying whether it was still held.
    pub fn release_held(&self, h: Held) -> Result<(), Error> {
        let id = h.defuse();
        let mut st = self.shared.state.lock();
        let stored = st.held.remove(&id).ok_or(Error::UnknownHeld)?;
        stored.release(&st.slab);
        Ok(())
    }

    /// Page buffers the caller holds as [`Held`] outputs (small ones take none).
    pub fn held_buffers(&self) -> usize {
        self.shared
            .state
            .lock()
            .held
            .values()
            .map(Stored::buffers)
            .sum()
    }
}
