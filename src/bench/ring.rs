//! `swarm bench ring`: our ring across two processes
//! against its peers, all measured in one run so that their ratios survive a noisy machine.
//!
//! Latency is a ping-pong: one side sends a 48-byte message, the other sends it back; the
//! one-way latency is half the round trip, measured per message (p50, p99). Throughput is a
//! one-way stream: the ring's producer lives in another process and pushes in batches; the
//! crossbeam baseline is a bounded channel between two threads, one message per send (its
//! API has no batch send).

use crate::bench::peer::{KIND_MSG, KIND_STOP};
use crate::runtime::spawn;
use crate::shm::descriptor::Descriptor;
use crate::shm::ring::Wait;
use crate::shm::segment::{Direction, Segment, SegmentConfig};
use serde::Serialize;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct RingBenchConfig {
    /// Round trips per latency measurement.
    pub messages: u64,
    /// Messages per throughput stream.
    pub stream: u64,
    /// The `agent-bin` executable that runs the far side.
    pub agent_bin: PathBuf,
}

/// One run's results. Field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct RingBenchReport {
    /// Round trips per latency measurement.
    pub messages: u64,
    /// Messages per throughput stream.
    pub stream: u64,
    /// Our ring, two processes, both sides busy-polling.
    pub ring_one_way_ns_p50: f64,
    /// As above, 99th percentile.
    pub ring_one_way_ns_p99: f64,
    /// Our ring, two processes, both sides sleeping on the futex at once (no spinning).
    pub ring_futex_one_way_ns_p50: f64,
    /// As above, 99th percentile.
    pub ring_futex_one_way_ns_p99: f64,
    /// As `ring_one_way_ns_p50`, the peer in the agents' sandbox (seccomp and all).
    pub ring_sandboxed_one_way_ns_p50: f64,
    /// As above, 99th percentile.
    pub ring_sandboxed_one_way_ns_p99: f64,
    /// As `ring_futex_one_way_ns_p50`, the peer in the agents' sandbox: every futex call
    /// passes its filter.
    pub ring_futex_sandboxed_one_way_ns_p50: f64,
    /// As above, 99th percentile.
    pub ring_futex_sandboxed_one_way_ns_p99: f64,
    /// Our ring, producer in another process, batches of 64.
    pub ring_msgs_per_s: f64,
    /// `crossbeam-channel` bounded (1024), two threads, busy ping-pong via `try_recv`.
    pub crossbeam_one_way_ns_p50: f64,
    /// As above, 99th percentile.
    pub crossbeam_one_way_ns_p99: f64,
    /// `crossbeam-channel` bounded (1024), two threads, one message per send.
    pub crossbeam_msgs_per_s: f64,
    /// Unix domain socket pair, two processes, blocking reads.
    pub uds_one_way_ns_p50: f64,
    /// As above, 99th percentile.
    pub uds_one_way_ns_p99: f64,
    /// Two pipes, two processes, blocking reads.
    pub pipe_one_way_ns_p50: f64,
    /// As above, 99th percentile.
    pub pipe_one_way_ns_p99: f64,
    /// `ring_msgs_per_s / crossbeam_msgs_per_s`.
    pub ring_vs_crossbeam_throughput: f64,
    /// CPUs available to the run.
    pub cpus: usize,
}

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Segment trouble.
    #[error(transparent)]
    Segment(#[from] crate::shm::segment::SegmentError),
    /// I/O or process trouble.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// The peer misbehaved.
    #[error("benchmark peer: {0}")]
    Peer(String),
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64
}

/// Round-trip samples (ns) to one-way (p50, p99).
fn one_way(mut rtts: Vec<u64>) -> (f64, f64) {
    rtts.sort_unstable();
    (percentile(&rtts, 0.50) / 2.0, percentile(&rtts, 0.99) / 2.0)
}

struct Peer {
    child: Child,
}

impl Peer {
    fn start(
        cfg: &RingBenchConfig,
        seg: Option<&Segment>,
        mode: &str,
        extra_fds: &[i32],
    ) -> Result<Peer, BenchError> {
        let mut cmd = Command::new(&cfg.agent_bin);
        let mut fds = extra_fds.to_vec();
        if let Some(seg) = seg {
            let agent = seg.agent_fds(0)?;
            cmd.args(agent.to_args());
            fds.extend(agent.all());
        }
        // A mode may carry more flags after it (`ring-echo:spin --sandbox`).
        cmd.args(["--slot", "0", "--epoch", "1", "--peer"])
            .args(mode.split_whitespace())
            .stdin(Stdio::null());
        spawn::inherit_fds(&mut cmd, &fds);
        if cpus() >= 2 {
            spawn::pin_child_to_cpu(&mut cmd, 1);
        }
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BenchError::Peer(format!(
                    "agent executable {} not found: build it (`cargo build --release`) or \
                     name it with --agent-bin or SWARM_AGENT_BIN",
                    cfg.agent_bin.display()
                ))
            } else {
                BenchError::Io("spawn agent-bin", e)
            }
        })?;
        Ok(Peer { child })
    }

    fn finish(mut self) -> Result<(), BenchError> {
        let status = self
            .child
            .wait()
            .map_err(|e| BenchError::Io("wait for peer", e))?;
        if !status.success() {
            return Err(BenchError::Peer(format!("exited with {status}")));
        }
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn small_segment() -> Result<std::sync::Arc<Segment>, BenchError> {
    Ok(Segment::create(SegmentConfig {
        agent_slots: 1,
        ring_capacity: 1024,
        buffer_size: 4096,
        buffer_count: 16,
        agent_buffers: 8,
        topics: 4,
        topic_capacity: 256,
        state_entries: 1024,
    })?)
}

const WATCHDOG: Option<Duration> = Some(Duration::from_secs(10));

/// Round trips through our ring; with `sandboxed`, the peer runs in the agents' sandbox.
fn ring_ping_pong(
    cfg: &RingBenchConfig,
    wait: Wait,
    mode: &str,
    sandboxed: bool,
) -> Result<Vec<u64>, BenchError> {
    let seg = small_segment()?;
    let mut tx = seg.producer(0, Direction::ToAgent)?;
    let mut rx = seg.consumer(0, Direction::FromAgent)?;
    let mode = if sandboxed {
        format!("{mode} --sandbox")
    } else {
        mode.to_string()
    };
    let peer = Peer::start(cfg, Some(&seg), &mode, &[])?;
    let warmup = (cfg.messages / 10).max(100);
    let mut rtts = Vec::with_capacity(cfg.messages as usize);
    let lost = |_| BenchError::Peer("no echo within 10 s".into());
    for i in 0..warmup + cfg.messages {
        let d = Descriptor::new(i, 0, KIND_MSG);
        let t0 = Instant::now();
        tx.push(d)
            .map_err(|_| BenchError::Peer("ring full".into()))?;
        let back = rx.pop_wait(wait, WATCHDOG).map_err(lost)?;
        let dt = t0.elapsed().as_nanos() as u64;
        if back.task_id != i {
            return Err(BenchError::Peer(format!("echo {} for {i}", back.task_id)));
        }
        if i >= warmup {
            rtts.push(dt);
        }
    }
    tx.push(Descriptor::new(0, 0, KIND_STOP))
        .map_err(|_| BenchError::Peer("ring full".into()))?;
    rx.pop_wait(wait, WATCHDOG).map_err(lost)?;
    peer.finish()?;
    Ok(rtts)
}

fn ring_stream(cfg: &RingBenchConfig) -> Result<f64, BenchError> {
    let seg = small_segment()?;
    let mut tx = seg.producer(0, Direction::ToAgent)?;
    let mut rx = seg.consumer(0, Direction::FromAgent)?;
    let peer = Peer::start(
        cfg,
        Some(&seg),
        &format!("ring-produce:{}", cfg.stream),
        &[],
    )?;
    let mut buf = Vec::with_capacity(1024);
    let t0 = Instant::now();
    tx.push(Descriptor::new(0, 0, KIND_MSG))
        .map_err(|_| BenchError::Peer("ring full".into()))?;
    let mut expect = 0u64;
    while expect < cfg.stream {
        buf.clear();
        if rx
            .pop_batch(&mut buf, 1024)
            .map_err(|e| BenchError::Peer(e.to_string()))?
            == 0
        {
            if !rx
                .wait_for_data(Wait::Spin, WATCHDOG)
                .map_err(|e| BenchError::Peer(e.to_string()))?
            {
                return Err(BenchError::Peer("stream stalled".into()));
            }
            continue;
        }
        for d in &buf {
            if d.task_id != expect {
                return Err(BenchError::Peer(format!(
                    "got {} expected {expect}",
                    d.task_id
                )));
            }
            expect += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    peer.finish()?;
    Ok(cfg.stream as f64 / secs)
}

fn crossbeam_ping_pong(messages: u64) -> Vec<u64> {
    let (to_tx, to_rx) = crossbeam_channel::bounded::<Descriptor>(1024);
    let (back_tx, back_rx) = crossbeam_channel::bounded::<Descriptor>(1024);
    let echo = std::thread::spawn(move || {
        if cpus() >= 2 {
            spawn::pin_current_thread(1);
        }
        loop {
            match to_rx.try_recv() {
                Ok(d) => {
                    let stop = d.kind == KIND_STOP;
                    back_tx.send(d).ok();
                    if stop {
                        break;
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(_) => break,
            }
        }
    });
    let warmup = (messages / 10).max(100);
    let mut rtts = Vec::with_capacity(messages as usize);
    for i in 0..warmup + messages {
        let t0 = Instant::now();
        to_tx.send(Descriptor::new(i, 0, KIND_MSG)).unwrap();
        let back = loop {
            match back_rx.try_recv() {
                Ok(d) => break d,
                Err(_) => std::hint::spin_loop(),
            }
        };
        let dt = t0.elapsed().as_nanos() as u64;
        assert_eq!(back.task_id, i);
        if i >= warmup {
            rtts.push(dt);
        }
    }
    to_tx.send(Descriptor::new(0, 0, KIND_STOP)).unwrap();
    back_rx.recv().unwrap();
    echo.join().unwrap();
    rtts
}

fn crossbeam_stream(stream: u64) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<Descriptor>(1024);
    let producer = std::thread::spawn(move || {
        if cpus() >= 2 {
            spawn::pin_current_thread(1);
        }
        for i in 0..stream {
            tx.send(Descriptor::new(i, 0, KIND_MSG)).unwrap();
        }
    });
    let t0 = Instant::now();
    let mut expect = 0;
    for d in rx.iter() {
        assert_eq!(d.task_id, expect);
        expect += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.join().unwrap();
    assert_eq!(expect, stream);
    stream as f64 / secs
}

fn fd_ping_pong(
    cfg: &RingBenchConfig,
    mut w: std::fs::File,
    mut r: std::fs::File,
    child_r: i32,
    child_w: i32,
    close_after_spawn: Vec<std::os::fd::OwnedFd>,
) -> Result<Vec<u64>, BenchError> {
    let peer = Peer::start(
        cfg,
        None,
        &format!("fd-echo:{child_r}:{child_w}"),
        &[child_r, child_w],
    )?;
    drop(close_after_spawn);
    let warmup = (cfg.messages / 10).max(100);
    let mut rtts = Vec::with_capacity(cfg.messages as usize);
    let mut buf = [0u8; crate::bench::peer::FD_MSG];
    for i in 0..warmup + cfg.messages {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        let t0 = Instant::now();
        w.write_all(&buf).map_err(|e| BenchError::Io("write", e))?;
        r.read_exact(&mut buf)
            .map_err(|e| BenchError::Io("read", e))?;
        let dt = t0.elapsed().as_nanos() as u64;
        if buf[..8] != i.to_le_bytes() {
            return Err(BenchError::Peer("fd echo mismatch".into()));
        }
        if i >= warmup {
            rtts.push(dt);
        }
    }
    drop(w);
    drop(r);
    peer.finish()?;
    Ok(rtts)
}

fn uds_ping_pong(cfg: &RingBenchConfig) -> Result<Vec<u64>, BenchError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| BenchError::Io("socketpair", e.into()))?;
    let fd = theirs.as_raw_fd();
    let f = std::fs::File::from(ours);
    let r = f.try_clone().map_err(|e| BenchError::Io("dup", e))?;
    fd_ping_pong(cfg, f, r, fd, fd, vec![theirs])
}

fn pipe_ping_pong(cfg: &RingBenchConfig) -> Result<Vec<u64>, BenchError> {
    let (to_r, to_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| BenchError::Io("pipe", e.into()))?;
    let (back_r, back_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| BenchError::Io("pipe", e.into()))?;
    let (cr, cw) = (to_r.as_raw_fd(), back_w.as_raw_fd());
    fd_ping_pong(
        cfg,
        std::fs::File::from(to_w),
        std::fs::File::from(back_r),
        cr,
        cw,
        vec![to_r, back_w],
    )
}

/// CPUs available when the run started (before this thread pinned itself to one).
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(spawn::available_cpus)
}

/// Runs every measurement, one after the other, in this process and its peers.
pub fn ring(cfg: &RingBenchConfig) -> Result<RingBenchReport, BenchError> {
    let pinned = (cpus() >= 2).then(|| spawn::pin_current_thread(0));
    let result = (|| {
        let spin =
            |sandboxed| ring_ping_pong(cfg, Wait::Spin, "ring-echo:spin", sandboxed).map(one_way);
        let futex = |sandboxed| {
            ring_ping_pong(cfg, Wait::SpinThenSleep(0), "ring-echo:futex", sandboxed).map(one_way)
        };
        let (ring_p50, ring_p99) = spin(false)?;
        let (sandboxed_p50, sandboxed_p99) = spin(true)?;
        let (futex_p50, futex_p99) = futex(false)?;
        let (futex_sandboxed_p50, futex_sandboxed_p99) = futex(true)?;
        let ring_rate = ring_stream(cfg)?;
        let (cb_p50, cb_p99) = one_way(crossbeam_ping_pong(cfg.messages));
        let cb_rate = crossbeam_stream(cfg.stream);
        let (uds_p50, uds_p99) = one_way(uds_ping_pong(cfg)?);
        let (pipe_p50, pipe_p99) = one_way(pipe_ping_pong(cfg)?);
        Ok(RingBenchReport {
            messages: cfg.messages,
            stream: cfg.stream,
            ring_one_way_ns_p50: ring_p50,
            ring_one_way_ns_p99: ring_p99,
            ring_futex_one_way_ns_p50: futex_p50,
            ring_futex_one_way_ns_p99: futex_p99,
            ring_sandboxed_one_way_ns_p50: sandboxed_p50,
            ring_sandboxed_one_way_ns_p99: sandboxed_p99,
            ring_futex_sandboxed_one_way_ns_p50: futex_sandboxed_p50,
            ring_futex_sandboxed_one_way_ns_p99: futex_sandboxed_p99,
            ring_msgs_per_s: ring_rate,
            crossbeam_one_way_ns_p50: cb_p50,
            crossbeam_one_way_ns_p99: cb_p99,
            crossbeam_msgs_per_s: cb_rate,
            uds_one_way_ns_p50: uds_p50,
            uds_one_way_ns_p99: uds_p99,
            pipe_one_way_ns_p50: pipe_p50,
            pipe_one_way_ns_p99: pipe_p99,
            ring_vs_crossbeam_throughput: ring_rate / cb_rate,
            cpus: cpus(),
        })
    })();
    if let Some(old) = pinned {
        spawn::restore_affinity(old);
    }
    result
}

/// A human-readable table of a ring report.
pub fn render_ring(r: &RingBenchReport) -> String {
    let rate = |x: f64| format!("{:>8.2} M msg/s", x / 1e6);
    let lat = |p50: f64, p99: f64| format!("p50 {p50:>8.0} ns   p99 {p99:>8.0} ns");
    [
        format!(
            "one-way latency ({} round trips, 48-byte messages, {} CPUs)",
            r.messages, r.cpus
        ),
        format!(
            "  ring, 2 processes, busy-poll  {}",
            lat(r.ring_one_way_ns_p50, r.ring_one_way_ns_p99)
        ),
        format!(
            "  ring, 2 processes, futex wait {}",
            lat(r.ring_futex_one_way_ns_p50, r.ring_futex_one_way_ns_p99)
        ),
        format!(
            "  ring, peer sandboxed, polling {}",
            lat(
                r.ring_sandboxed_one_way_ns_p50,
                r.ring_sandboxed_one_way_ns_p99
            )
        ),
        format!(
            "  ring, peer sandboxed, futex   {}",
            lat(
                r.ring_futex_sandboxed_one_way_ns_p50,
                r.ring_futex_sandboxed_one_way_ns_p99
            )
        ),
        format!(
            "  crossbeam-channel, 2 threads  {}",
            lat(r.crossbeam_one_way_ns_p50, r.crossbeam_one_way_ns_p99)
        ),
        format!(
            "  unix socket pair, 2 processes {}",
            lat(r.uds_one_way_ns_p50, r.uds_one_way_ns_p99)
        ),
        format!(
            "  pipes, 2 processes            {}",
            lat(r.pipe_one_way_ns_p50, r.pipe_one_way_ns_p99)
        ),
        format!("throughput ({} messages, one way)", r.stream),
        format!(
            "  ring, 2 processes, batches    {}",
            rate(r.ring_msgs_per_s)
        ),
        format!(
            "  crossbeam-channel, 2 threads  {}",
            rate(r.crossbeam_msgs_per_s)
        ),
        format!(
            "  ring / crossbeam              {:>8.2}x",
            r.ring_vs_crossbeam_throughput
        ),
    ]
    .join("\n")
}
