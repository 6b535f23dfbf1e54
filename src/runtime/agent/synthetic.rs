//! The synthetic task kinds that tests and benchmarks use ([`crate::runtime::task::kinds`]).

use super::Registry;
use crate::runtime::task::{kinds, ECHO_XOR};
use std::time::{Duration, Instant};

impl Registry {
    /// The synthetic kinds used by tests and benchmarks: `noop`, `spin`, `busy`, `sleep`,
    /// `echo`, `alloc`, `concat`, `crash`, `hang`, `panic`, and the bus's `publish`,
    /// `listen` and `progress`.
    pub fn with_synthetic() -> Self {
        let mut r = Self::new();
        r.add_synthetic();
        r
    }

    fn add_synthetic(&mut self) {
        let spin = |ctx: &super::TaskContext<'_>, beat: bool| {
            let end = Instant::now() + Duration::from_nanos(ctx.arg());
            let mut i = 0u32;
            while Instant::now() < end {
                std::hint::spin_loop();
                i = i.wrapping_add(1);
                if beat && i % 1024 == 0 {
                    ctx.beat();
                }
            }
            Vec::new()
        };
        let all: [(
            crate::runtime::task::TaskKind,
            &'static str,
            super::registry::Handler,
        ); 13] = [
            (kinds::NOOP, "noop", Box::new(|_| Ok(Vec::new()))),
            (
                kinds::SPIN,
                "spin",
                Box::new(move |ctx| Ok(spin(ctx, true))),
            ),
            // Ordinary CPU-bound code: it never beats, and must not be taken for hung.
            (
                kinds::BUSY,
                "busy",
                Box::new(move |ctx| Ok(spin(ctx, false))),
            ),
            (
                kinds::SLEEP,
                "sleep",
                Box::new(|ctx| {
                    ctx.sleep(Duration::from_nanos(ctx.arg()));
                    Ok(Vec::new())
                }),
            ),
            (
                kinds::ECHO,
                "echo",
                Box::new(|ctx| Ok(ctx.input().iter().map(|b| b ^ ECHO_XOR).collect())),
            ),
            (
                kinds::ALLOC,
                "alloc",
                Box::new(|ctx| alloc(ctx.arg() as usize).map_err(Into::into)),
            ),
            (
                kinds::CONCAT,
                "concat",
                Box::new(|ctx| Ok(ctx.inputs().concat())),
            ),
            (kinds::CRASH, "crash", Box::new(|_| std::process::abort())),
            (
                kinds::HANG,
                "hang",
                Box::new(|_| {
                    // The whole process stops, its liveness thread with it: what a frozen
                    // agent looks like. Only the supervisor's SIGKILL ends it.
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }),
            ),
            (
                kinds::PANIC,
                "panic",
                Box::new(|_| panic!("synthetic panic")),
            ),
            (
                kinds::PUBLISH,
                "publish",
                Box::new(|ctx| publish(ctx).map_err(Into::into)),
            ),
            (
                kinds::LISTEN,
                "listen",
                Box::new(|ctx| listen(ctx).map_err(Into::into)),
            ),
            (
                kinds::PROGRESS,
                "progress",
                Box::new(|ctx| progress(ctx).map_err(Into::into)),
            ),
        ];
        for (kind, name, handler) in all {
            self.insert(kind, name, handler)
                .expect("synthetic kinds are distinct and registered first");
        }
    }
}

/// Allocates and touches `size` bytes, then frees them.
fn alloc(size: usize) -> Result<Vec<u8>, String> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(size)
        .map_err(|e| format!("cannot reserve {size} bytes: {e}"))?;
    // Touch every page so the memory is really charged to the agent's cgroup.
    let page = 4096;
    let mut touched = 0;
    while touched < size {
        let n = page.min(size - touched);
        v.extend(std::iter::repeat_n(1u8, n));
        touched += n;
    }
    std::hint::black_box(&v);
    Ok(Vec::new())
}

/// `publish`: a topic name, a newline, a message; `count` copies, each with its index.
pub(super) fn publish(ctx: &super::TaskContext<'_>) -> Result<Vec<u8>, String> {
    let input = ctx.input();
    let at = input
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("publish: no newline after the topic")?;
    let topic = std::str::from_utf8(&input[..at]).map_err(|_| "publish: topic not UTF-8")?;
    // The process id tells one attempt's messages from another's (a retry counts again
    // from 0).
    let pid = std::process::id().to_le_bytes();
    for i in 0..ctx.arg() {
        let msg = [&input[at + 1..], &pid[..], &i.to_le_bytes()[..]].concat();
        ctx.bus()
            .publish(topic, &msg)
            .map_err(|e| format!("publish: {e}"))?;
    }
    Ok(Vec::new())
}

/// `listen`: hears a topic as [`crate::runtime::bus::Listen`] says, and tells what it heard.
pub(super) fn listen(ctx: &super::TaskContext<'_>) -> Result<Vec<u8>, String> {
    use crate::runtime::bus::{monotonic_ns, Heard, Listen};
    use crate::shm::bus::BusError;
    let l: Listen = serde_json::from_slice(ctx.input()).map_err(|e| format!("listen: {e}"))?;
    let bus = ctx.bus();
    bus.subscribe(&l.topic)
        .map_err(|e| format!("listen: {e}"))?;
    if let Some(ready) = &l.ready {
        bus.publish(ready, b"ready")
            .map_err(|e| format!("listen: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_millis(l.timeout_ms);
    let mut heard = Heard {
        in_order: true,
        ..Heard::default()
    };
    // Order is per publisher, and per run of its messages (what precedes the index).
    let mut last: std::collections::HashMap<(u32, Vec<u8>), u64> = Default::default();
    let mut times = Vec::new();
    while heard.received < l.count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let got = if l.poll {
            bus.poll(&l.topic, left)
        } else {
            bus.recv(&l.topic, left)
        };
        match got {
            Ok(m) if m.bytes == b"end" => {
                heard.finished = true;
                break;
            }
            Ok(m) => {
                let now = monotonic_ns();
                heard.received += 1;
                if l.stamped && m.bytes.len() >= 8 {
                    let sent = u64::from_le_bytes(m.bytes[..8].try_into().expect("8 bytes"));
                    times.push(now.saturating_sub(sent));
                }
                if m.bytes.len() >= 8 {
                    let (run, tail) = m.bytes.split_at(m.bytes.len() - 8);
                    let index = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
                    let key = (m.publisher, run.to_vec());
                    if let Some(&prev) = last.get(&key) {
                        heard.in_order &= index > prev;
                    }
                    last.insert(key, index);
                }
            }
            Err(BusError::Lagged(n)) => {
                heard.lagged += n;
                heard.lag_events += 1;
            }
            Err(BusError::Empty) => break,
            Err(BusError::Corrupt) => return Err("listen: a corrupt message".into()),
        }
    }
    heard.finished |= heard.received >= l.count;
    times.sort_unstable();
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    heard.one_way_ns_p50 = pct(0.50);
    heard.one_way_ns_p99 = pct(0.99);
    serde_json::to_vec(&heard).map_err(|e| e.to_string())
}

/// `progress`: `steps` reports, 2 ms apart.
pub(super) fn progress(ctx: &super::TaskContext<'_>) -> Result<Vec<u8>, String> {
    let steps = u32::try_from(ctx.arg()).unwrap_or(u32::MAX);
    for i in 0..steps {
        ctx.sleep(Duration::from_millis(2));
        ctx.bus()
            .progress(i + 1, steps)
            .map_err(|e| format!("progress: {e}"))?;
    }
    Ok(Vec::new())
}
