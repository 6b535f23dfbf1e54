//! What the synthetic state kinds take and return ([`crate::runtime::task::kinds::STATE_WRITE`],
//! [`crate::runtime::task::kinds::STATE_WATCH`]): writers and watchers of the shared state
//! that tests and `swarm bench state` run in agents.
//!
//! A written value is [`value`]: the write's index, the writer's clock, then filler bytes
//! that all equal the index's low byte, so a watcher can tell a torn value from a whole one
//! and how long a write took to become visible.

/// A writer's task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StateWrite {
    /// The key.
    pub key: String,
    /// Writes to make.
    pub count: u64,
    /// Strong writes (each waits for the supervisor), or eventual ones.
    pub strong: bool,
    /// Time between two writes, µs.
    pub gap_us: u64,
    /// The value's length (at least 16).
    pub len: usize,
    /// Instead: increment the key as a counter (8 bytes) `count` times, by
    /// compare-and-set, retrying on a conflict.
    #[serde(default)]
    pub incr: bool,
}

/// What a writer did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Wrote {
    /// Writes made.
    pub writes: u64,
    /// Time a write took (a strong one: its round trip), p50 and p99, µs.
    pub write_us_p50: f64,
    /// See `write_us_p50`.
    pub write_us_p99: f64,
}

/// A watcher's task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StateWatch {
    /// The key.
    pub key: String,
    /// How long it reads, ms.
    pub duration_ms: u64,
}

/// What a watcher saw.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Watched {
    /// Reads made.
    pub reads: u64,
    /// Reads a second.
    pub reads_per_s: f64,
    /// Values that were not whole (must be 0).
    pub torn: u64,
    /// New versions seen.
    pub seen: u64,
    /// From a write (its writer's clock) to this watcher seeing it, p50 and p99, µs.
    pub visible_us_p50: f64,
    /// See `visible_us_p50`.
    pub visible_us_p99: f64,
}

/// A cached value's task: the key, and how its value is computed on a miss.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cached {
    /// The key.
    pub key: String,
    /// How long computing takes, ms.
    pub compute_ms: u64,
    /// The value's length: its bytes are the key's, repeated.
    pub len: usize,
}

/// What a cached value's task got.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Got {
    /// Whether it computed the value (else it came from the cache).
    pub computed: bool,
    /// Whether the value is the key's bytes repeated, as computed.
    pub whole: bool,
    /// Its length.
    pub len: usize,
}

/// The value a [`Cached`] task computes.
pub fn cached_value(key: &str, len: usize) -> Vec<u8> {
    key.bytes().cycle().take(len).collect()
}

/// The value of write `index`, stamped `now`, `len` bytes (at least 16).
pub fn value(index: u64, now: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(16));
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(&now.to_le_bytes());
    v.resize(len.max(16), index as u8);
    v
}

/// The index and stamp of a whole value; `None` for a torn one.
pub fn check(v: &[u8]) -> Option<(u64, u64)> {
    let index = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let now = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    v[16..]
        .iter()
        .all(|&b| b == index as u8)
        .then_some((index, now))
}

/// The `p` quantile (0 to 1) of sorted samples, nearest rank; 0 for none.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
