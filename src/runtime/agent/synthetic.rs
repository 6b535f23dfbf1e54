//! The synthetic task kinds that tests and benchmarks use ([`crate::runtime::task::kinds`]).

use super::Registry;
use crate::runtime::task::{kinds, ECHO_XOR};
use std::time::{Duration, Instant};

impl Registry {
    /// The synthetic kinds used by tests and benchmarks: `noop`, `spin`, `busy`, `sleep`,
    /// `echo`, `alloc`, `concat`, `crash`, `hang`, `panic`, and the bus's `publish`,
    /// `listen` and `progress`, and the shared state's `state.write` and `state.watch`.
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
        ); 16] = [
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
            (
                kinds::STATE_WRITE,
                "state.write",
                Box::new(|ctx| state_write(ctx).map_err(Into::into)),
            ),
            (
                kinds::STATE_WATCH,
                "state.watch",
                Box::new(|ctx| state_watch(ctx).map_err(Into::into)),
            ),
            (
                kinds::CACHED,
                "cached",
                Box::new(|ctx| cached(ctx).map_err(Into::into)),
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
    let mut times: Vec<f64> = times.into_iter().map(|t| t as f64).collect();
    times.sort_by(f64::total_cmp);
    heard.one_way_ns_p50 = crate::runtime::probes::quantile(&times, 0.50) as u64;
    heard.one_way_ns_p99 = crate::runtime::probes::quantile(&times, 0.99) as u64;
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

/// `state.write`: writes as [`crate::runtime::probes::StateWrite`] says.
pub(super) fn state_write(ctx: &super::TaskContext<'_>) -> Result<Vec<u8>, String> {
    use crate::runtime::bus::monotonic_ns;
    use crate::runtime::probes::{quantile, value, StateWrite, Wrote};
    use crate::runtime::supervisor::Consistency;
    let w: StateWrite =
        serde_json::from_slice(ctx.input()).map_err(|e| format!("state.write: {e}"))?;
    let how = if w.strong {
        Consistency::Strong
    } else {
        Consistency::Eventual
    };
    let mut times = Vec::with_capacity(w.count as usize);
    if w.incr {
        // A counter: read it, compare-and-set it one up, again on a conflict.
        let key = w.key.as_bytes();
        for _ in 0..w.count {
            loop {
                let (version, n) = match ctx.state().get(key).map_err(|e| e.to_string())? {
                    Some((v, b)) => (
                        v,
                        u64::from_le_bytes(
                            b.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]),
                        ),
                    ),
                    None => (0, 0),
                };
                let t0 = Instant::now();
                let r = ctx
                    .state()
                    .cas(key, version, &(n + 1).to_le_bytes())
                    .map_err(|e| format!("state.write: {e}"))?;
                times.push(t0.elapsed().as_secs_f64() * 1e6);
                if r.is_ok() {
                    break;
                }
            }
        }
    }
    let mut next = Instant::now();
    for i in (0..w.count).filter(|_| !w.incr) {
        next += Duration::from_micros(w.gap_us);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        ctx.state()
            .put(w.key.as_bytes(), &value(i, monotonic_ns(), w.len), how)
            .map_err(|e| format!("state.write: {e}"))?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let wrote = Wrote {
        writes: w.count,
        write_us_p50: quantile(&times, 0.5),
        write_us_p99: quantile(&times, 0.99),
    };
    serde_json::to_vec(&wrote).map_err(|e| e.to_string())
}

/// `state.watch`: reads a key as [`crate::runtime::probes::StateWatch`] says, checking
/// every value.
pub(super) fn state_watch(ctx: &super::TaskContext<'_>) -> Result<Vec<u8>, String> {
    use crate::runtime::bus::monotonic_ns;
    use crate::runtime::probes::{check, quantile, StateWatch, Watched};
    let w: StateWatch =
        serde_json::from_slice(ctx.input()).map_err(|e| format!("state.watch: {e}"))?;
    let start = Instant::now();
    let end = start + Duration::from_millis(w.duration_ms);
    let mut seen = Watched::default();
    let mut last = 0u64;
    let mut visible = Vec::new();
    while Instant::now() < end {
        for _ in 0..64 {
            seen.reads += 1;
            match ctx.state().get(w.key.as_bytes()) {
                Ok(Some((version, v))) => match check(&v) {
                    Some((_, stamp)) if version != last => {
                        // The first value seen may be older than the watch.
                        if last != 0 {
                            visible.push(monotonic_ns().saturating_sub(stamp) as f64 / 1e3);
                        }
                        last = version;
                        seen.seen += 1;
                    }
                    Some(_) => {}
                    None => seen.torn += 1,
                },
                Ok(None) => {}
                Err(e) => return Err(format!("state.watch: {e}")),
            }
        }
    }
    seen.reads_per_s = seen.reads as f64 / start.elapsed().as_secs_f64().max(1e-9);
    visible.sort_by(f64::total_cmp);
    seen.visible_us_p50 = quantile(&visible, 0.5);
    seen.visible_us_p99 = quantile(&visible, 0.99);
    serde_json::to_vec(&seen).map_err(|e| e.to_string())
}

/// `cached`: a value through the shared cache, as [`crate::runtime::probes::Cached`] says.
pub(super) fn cached(ctx: &super::TaskContext<'_>) -> Result<Vec<u8>, String> {
    use crate::runtime::probes::{cached_value, Cached, Got};
    let c: Cached = serde_json::from_slice(ctx.input()).map_err(|e| format!("cached: {e}"))?;
    let (v, source) = ctx
        .cache()
        .get_or_compute(c.key.as_bytes(), || {
            ctx.sleep(Duration::from_millis(c.compute_ms));
            Ok::<_, String>(cached_value(&c.key, c.len))
        })
        .map_err(|e| format!("cached: {e}"))?;
    let got = Got {
        computed: source == super::Source::Computed,
        whole: v == cached_value(&c.key, c.len),
        len: v.len(),
    };
    serde_json::to_vec(&got).map_err(|e| e.to_string())
}
