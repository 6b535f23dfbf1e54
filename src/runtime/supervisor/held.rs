//! Outputs kept in the page-buffer slab for the caller.

use super::*;

impl Supervisor {
    /// Places `bytes` in page buffers, held for the caller like an output: a small input
    /// to go beside outputs in a fan-in ([`TaskSpec::inputs`]).
    pub fn hold(&self, bytes: &[u8]) -> Result<Held, Error> {
        let mut st = self.shared.state.lock();
        let h = st.slab.write_payload(Owner::Supervisor, bytes)?;
        let parts = bytes.len().div_ceil(st.slab.buffer_size()).max(1);
        let token = st.next_held;
        st.next_held += 1;
        st.held
            .insert(token, (h.to_raw(), bytes.len() as u64, parts));
        Ok(Held {
            id: token,
            len: bytes.len() as u64,
        })
    }

    /// Copies a held output out of the slab and frees it.
    pub fn take_held(&self, h: Held) -> Result<Vec<u8>, Error> {
        let mut st = self.shared.state.lock();
        let (raw, len, _) = st.held.remove(&h.id).ok_or(Error::UnknownHeld)?;
        let bytes = st.slab.read_payload(raw, len, Owner::Supervisor);
        let _ = st.slab.release_chain(raw, len, Owner::Supervisor);
        Ok(bytes?)
    }

    /// Copies the first `n` bytes of a held output, which stays held.
    pub fn peek_held(&self, h: Held, n: usize) -> Result<Vec<u8>, Error> {
        let st = self.shared.state.lock();
        let &(raw, len, _) = st.held.get(&h.id).ok_or(Error::UnknownHeld)?;
        let parts = st.slab.segments(raw, len, Owner::Supervisor)?;
        let mut out = Vec::with_capacity(n.min(len as usize));
        for p in parts {
            let take = (n - out.len()).min(p.len());
            out.extend_from_slice(&p[..take]);
            if out.len() == n {
                break;
            }
        }
        Ok(out)
    }

    /// Frees a held output.
    pub fn release_held(&self, h: Held) -> Result<(), Error> {
        let mut st = self.shared.state.lock();
        let (raw, len, _) = st.held.remove(&h.id).ok_or(Error::UnknownHeld)?;
        let _ = st.slab.release_chain(raw, len, Owner::Supervisor);
        Ok(())
    }

    /// Page buffers the caller holds as [`Held`] outputs.
    pub fn held_buffers(&self) -> usize {
        self.shared.state.lock().held.values().map(|h| h.2).sum()
    }
}
