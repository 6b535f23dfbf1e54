//! The shared cache from inside an agent ([`crate::runtime::supervisor::CacheLimits`]):
//! `get_or_compute(key, f)`. The supervisor says whether the value is there (it is then
//! read from the supervisor's page buffers, in place, and copied), whether to compute it
//! (the first to ask), or, while another agent computes it, nothing until that value is
//! there, or the key is handed to this agent because its computer is gone.

use super::state::{SharedState, StateError};
use crate::runtime::supervisor::{state_op, state_reply};
use crate::shm::slab::Owner;
use std::time::Duration;

/// How long an asker waits for another agent's value before it computes it itself.
const WAIT_FOR_VALUE: Duration = Duration::from_secs(120);

/// Why a value came neither from the cache nor from `f`.
#[derive(Debug, thiserror::Error)]
pub enum CacheError<E> {
    /// `f` failed (the key is handed to the next asker).
    #[error("computing the value failed")]
    Compute(E),
    /// The cache could not be asked.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The shared cache, as a handler uses it ([`super::TaskContext::cache`]).
#[derive(Debug)]
pub struct Cache<'b> {
    pub(super) state: SharedState<'b>,
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Another computation of it, in this agent or another.
    Cache,
    /// `f`, here.
    Computed,
}

impl Cache<'_> {
    /// Hands `value` to the cache under `key` without asking first (nothing waits for an
    /// answer): kept if the task was declared with that key and nobody else's value for it
    /// is there.
    pub fn fill(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.state
            .request(state_op::CACHE_PUT, 0, key, value)
            .map(drop)
    }

    /// The value of `key` (up to 65,535 bytes of key): from the cache if it is there or
    /// another agent is computing it (this waits for that), else from `f`, which is then
    /// kept for the next asker. An `f` that fails hands the key on to whoever waits.
    pub fn get_or_compute<E>(
        &self,
        key: &[u8],
        f: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<(Vec<u8>, Source), CacheError<E>> {
        let answer = self
            .state
            .ask_within(state_op::CACHE_GET, 0, key, &[], WAIT_FOR_VALUE);
        let (status, first, len) = match answer {
            Ok(a) => a,
            // No value in time: compute it here, and keep it to ourselves.
            Err(StateError::NoAnswer(_)) => (state_reply::CACHE_UNCACHED, 0, 0),
            Err(e) => return Err(e.into()),
        };
        match status {
            state_reply::CACHE_HIT => {
                let slab = self.state.bus.slab();
                let read = slab.read_payload(first, len, Owner::Supervisor);
                // Done reading: the supervisor may evict it again.
                let _ = self.state.request(state_op::CACHE_RELEASE, 0, key, &[]);
                match read {
                    Ok(v) => Ok((v, Source::Cache)),
                    // The supervisor's chain did not check out: compute it here.
                    Err(_) => f()
                        .map(|v| (v, Source::Computed))
                        .map_err(CacheError::Compute),
                }
            }
            state_reply::CACHE_COMPUTE => match f() {
                Ok(v) => {
                    self.state.request(state_op::CACHE_PUT, 0, key, &v)?;
                    Ok((v, Source::Computed))
                }
                Err(e) => {
                    let _ = self.state.request(state_op::CACHE_ABANDON, 0, key, &[]);
                    Err(CacheError::Compute(e))
                }
            },
            _ => f()
                .map(|v| (v, Source::Computed))
                .map_err(CacheError::Compute),
        }
    }
}
