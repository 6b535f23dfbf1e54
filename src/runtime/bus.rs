//! What the runtime says on the bus ([`crate::shm::bus`]), and how its messages are
//! written.
//!
//! Every segment has two topics of the runtime's own before any of the embedder's:
//! - [`CONTROL_TOPIC`]: the supervisor's word to every agent ([`Control`]): a task
//!   cancelled (an agent skips it if it has not started it, and a handler can ask
//!   [`crate::agent::Bus::cancelled`]), and shutdown. Only the supervisor publishes there.
//! - [`PROGRESS_TOPIC`]: agents' [`Progress`] reports, which the supervisor keeps per agent
//!   (`status().agents[i].progress`) and passes on to every subscriber.
//!
//! An agent publishes by handing the supervisor its message (a descriptor on its
//! completion ring, the bytes inline or in its own page buffers); the supervisor copies it
//! into the topic, so every topic has one writer and no agent can change a message once it
//! is out. Messages keep their order per publisher. The publisher recorded with each
//! message is 0 for the supervisor and `slot + 1` for an agent.

use crate::runtime::task::TaskId;

/// The supervisor's control topic.
pub const CONTROL_TOPIC: &str = "swarm.control";
/// Agents' progress reports.
pub const PROGRESS_TOPIC: &str = "swarm.progress";
/// The runtime's topics, in topic order (the embedder's follow).
pub const RUNTIME_TOPICS: [&str; 2] = [CONTROL_TOPIC, PROGRESS_TOPIC];
/// The control topic's number.
pub const CONTROL: u32 = 0;
/// The progress topic's number.
pub const PROGRESS: u32 = 1;
/// The publisher number of the supervisor.
pub const SUPERVISOR: u32 = 0;

/// The publisher number of the agent in `slot`.
pub fn agent_publisher(slot: u32) -> u32 {
    slot.saturating_add(1)
}

/// The supervisor's word to agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The task is cancelled: not worth starting, nor finishing.
    Cancel(TaskId),
    /// The supervisor is shutting down: finish nothing more.
    Shutdown,
}

impl Control {
    /// Its bytes: a tag, then the task id (little-endian) for a cancel.
    pub fn encode(self) -> Vec<u8> {
        match self {
            Control::Cancel(id) => [&[1u8][..], &id.get().to_le_bytes()].concat(),
            Control::Shutdown => vec![2],
        }
    }

    /// Reads one back; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Control> {
        match b {
            [1, id @ ..] => Some(Control::Cancel(TaskId(u64::from_le_bytes(
                id.try_into().ok()?,
            )))),
            [2] => Some(Control::Shutdown),
            _ => None,
        }
    }
}

/// An agent's report of how far its task has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// The task.
    pub task: u64,
    /// Units done (pages, items: the handler's choice).
    pub done: u32,
    /// Units in all (0: unknown).
    pub total: u32,
}

impl Progress {
    /// Its 16 bytes, little-endian: task, done, total (it travels inline).
    pub fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.task.to_le_bytes());
        b[8..12].copy_from_slice(&self.done.to_le_bytes());
        b[12..].copy_from_slice(&self.total.to_le_bytes());
        b
    }

    /// Reads one back; `None` unless it is 16 bytes.
    pub fn decode(b: &[u8]) -> Option<Progress> {
        let b: &[u8; 16] = b.try_into().ok()?;
        Some(Progress {
            task: u64::from_le_bytes(b[..8].try_into().ok()?),
            done: u32::from_le_bytes(b[8..12].try_into().ok()?),
            total: u32::from_le_bytes(b[12..].try_into().ok()?),
        })
    }
}

/// The monotonic clock in ns (`CLOCK_MONOTONIC`), the same in every process of the host:
/// a message stamped with it tells its receiver how long it travelled.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// What a [`crate::runtime::task::kinds::LISTEN`] task is to listen for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Listen {
    /// The topic.
    pub topic: String,
    /// A topic to say "subscribed" on (the message is the agent's slot), if any.
    pub ready: Option<String>,
    /// Messages to hear before it ends (a message `end` ends it sooner).
    pub count: u64,
    /// The longest it listens, in ms.
    pub timeout_ms: u64,
    /// Whether messages start with the publisher's [`monotonic_ns`] (their one-way time is
    /// then measured).
    pub stamped: bool,
    /// Whether it polls without ever sleeping (lowest latency, a core of its own), instead
    /// of sleeping until the supervisor publishes.
    #[serde(default)]
    pub poll: bool,
}

/// What a [`crate::runtime::task::kinds::LISTEN`] task heard.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Heard {
    /// Messages received.
    pub received: u64,
    /// Messages it was told it lost, in all.
    pub lagged: u64,
    /// Times it was told so.
    pub lag_events: u64,
    /// Per publisher: whether its messages' indexes (their last 8 bytes) only rose.
    pub in_order: bool,
    /// One-way times of stamped messages, p50 and p99, ns.
    pub one_way_ns_p50: u64,
    /// See `one_way_ns_p50`.
    pub one_way_ns_p99: u64,
    /// Whether it heard `end` (or its count) before its timeout.
    pub finished: bool,
}

/// Packs a message of at most 16 bytes into a descriptor's `buffer` and `len` words.
pub fn pack_inline(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() > 16 {
        return None;
    }
    let mut b = [0u8; 16];
    b[..bytes.len()].copy_from_slice(bytes);
    Some((
        u64::from_le_bytes(b[..8].try_into().ok()?),
        u64::from_le_bytes(b[8..].try_into().ok()?),
    ))
}

/// Unpacks what [`pack_inline`] packed: `len` of the 16 bytes (at most 16).
pub fn unpack_inline(words: (u64, u64), len: u32) -> Vec<u8> {
    let mut b = [words.0.to_le_bytes(), words.1.to_le_bytes()].concat();
    b.truncate((len as usize).min(16));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_and_garbage_is_refused() {
        for c in [Control::Cancel(TaskId(0xDEAD_BEEF)), Control::Shutdown] {
            assert_eq!(Control::decode(&c.encode()), Some(c));
        }
        assert_eq!(Control::decode(&[1, 2, 3]), None);
        assert_eq!(Control::decode(&[]), None);
        let p = Progress {
            task: 7,
            done: 3,
            total: 9,
        };
        assert_eq!(Progress::decode(&p.encode()), Some(p));
        assert_eq!(Progress::decode(&[0; 15]), None);
        let w = pack_inline(b"hello, bus").unwrap();
        assert_eq!(unpack_inline(w, 10), b"hello, bus");
        assert_eq!(unpack_inline(w, u32::MAX).len(), 16);
        assert!(pack_inline(&[0; 17]).is_none());
    }
}
