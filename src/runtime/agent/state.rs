//! The shared state from inside an agent ([`crate::runtime::supervisor::Consistency`]):
//! reads in place, from the table in the supervisor's file; writes through the supervisor,
//! which alone writes the table. An eventual write is handed over and not waited for; a
//! strong write or a compare-and-set waits for the supervisor's answer in this agent's slot
//! file.

use super::bus::{Bus, PublishError};
use crate::runtime::supervisor::{encode_state_request, state_op, state_reply, Consistency};
use crate::runtime::task::status;
use crate::shm::kv::{check, KvError};
use crate::shm::segment::SegmentError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a strong write waits for the supervisor's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A key or value too large, or the table full.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The request could not be handed over.
    #[error(transparent)]
    Send(#[from] PublishError),
    /// The supervisor refused it (too large, the table full).
    #[error("the supervisor refused the write")]
    Refused,
    /// No answer in time.
    #[error("no answer from the supervisor within {0:?}")]
    NoAnswer(Duration),
    /// The slot's reply line is not mapped.
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

/// The shared state, as a handler uses it ([`super::TaskContext::state`]).
#[derive(Debug)]
pub struct SharedState<'b> {
    pub(super) bus: &'b Bus<'b>,
}

impl SharedState<'_> {
    /// The version and value of `key`, read in place without a round trip.
    pub fn get(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>, KvError> {
        self.bus.kv.get(key)
    }

    /// Writes `value` under `key`. `Eventual`: handed to the supervisor with this agent's
    /// clock as its version (returned), applied if no later write got there first.
    /// `Strong`: ordered and applied by the supervisor before this returns the version.
    pub fn put(&self, key: &[u8], value: &[u8], how: Consistency) -> Result<u64, StateError> {
        check(key, value)?;
        match how {
            Consistency::Eventual => {
                let v = crate::runtime::bus::monotonic_ns();
                self.request(state_op::PUT_EVENTUAL, v, key, value)?;
                Ok(v)
            }
            Consistency::Strong => match self.ask(state_op::PUT_STRONG, 0, key, value)? {
                (state_reply::WRITTEN, v, _) => Ok(v),
                _ => Err(StateError::Refused),
            },
        }
    }

    /// Writes `value` under `key` only if its version is `expected` (0: absent):
    /// `Ok(Ok(new version))`, or `Ok(Err(the key's version))`.
    pub fn cas(
        &self,
        key: &[u8],
        expected: u64,
        value: &[u8],
    ) -> Result<Result<u64, u64>, StateError> {
        check(key, value)?;
        match self.ask(state_op::CAS, expected, key, value)? {
            (state_reply::WRITTEN, v, _) => Ok(Ok(v)),
            (state_reply::CONFLICT, v, _) => Ok(Err(v)),
            _ => Err(StateError::Refused),
        }
    }

    /// Hands a request over; its number.
    pub(super) fn request(
        &self,
        op: u32,
        version: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<u64, StateError> {
        let id = self.bus.requests.get() + 1;
        self.bus.requests.set(id);
        let bytes = encode_state_request(version, key, value);
        self.bus.hand_over(status::STATE, id, op, &bytes, false)?;
        Ok(id)
    }

    /// Hands a request over and waits for its answer: (status, version, extra).
    fn ask(
        &self,
        op: u32,
        version: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<(u64, u64, u64), StateError> {
        self.ask_within(op, version, key, value, ANSWER_WITHIN)
    }

    /// Hands a request over and waits at most `within` for its answer: (status, version,
    /// extra).
    pub(super) fn ask_within(
        &self,
        op: u32,
        version: u64,
        key: &[u8],
        value: &[u8],
        within: Duration,
    ) -> Result<(u64, u64, u64), StateError> {
        let reply = self.bus.seg.state_reply(self.bus.config.slot)?;
        let id = self.request(op, version, key, value)?;
        let answered = || {
            // Acquire: SYNC POINT (state answer): pairs with the supervisor's Release store
            // of `request` after the answer's words.
            if reply.request.load(Ordering::Acquire) != id {
                return None;
            }
            // Relaxed: published by the Acquire above.
            let words = (
                reply.status.load(Ordering::Relaxed),
                reply.version.load(Ordering::Relaxed),
                reply.extra.load(Ordering::Relaxed),
            );
            // Acquire: SYNC POINT (state answer rewritten): pairs with the supervisor's
            // Release fence after it marks the line "no answer" and before it writes the
            // words: if any word read above is a newer answer's, the load below sees the
            // mark or that answer's number, not ours.
            crate::shm::sync::fence(Ordering::Acquire);
            (reply.request.load(Ordering::Relaxed) == id).then_some(words)
        };
        let deadline = Instant::now() + within;
        let mut spins = 0u32;
        loop {
            if let Some(a) = answered() {
                return Ok(a);
            }
            if spins < self.bus.config.spin {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StateError::NoAnswer(within));
            }
            let pair = reply.wait_pair();
            let token = pair.prepare();
            if let Some(a) = answered() {
                pair.finish();
                return Ok(a);
            }
            pair.sleep(token, Some(left));
            pair.finish();
        }
    }
}
