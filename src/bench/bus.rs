//! `swarm bench bus`: the bus from the supervisor to subscribers in agent processes, in
//! one run, and iceoryx2's publish-subscribe between processes in the same run.
//!
//! 1. One-way time: the supervisor publishes stamped messages ([`monotonic_ns`]) one at a
//!    time, `--gap` apart, to 1 and then 4 subscribers (agents running `listen`); each
//!    subscriber takes the time a message took to reach it. One subscriber polls, as
//!    iceoryx2's does; four sleep until woken (on two cores, four pollers would each wait
//!    for a time slice). The p50 and p99 of the worst subscriber.
//! 2. Throughput: the supervisor publishes `--messages` 32-byte messages back to back
//!    while the subscribers read: messages published per second.
//! 3. The same with 4 subscribers reading and with one of them stopped by SIGSTOP, in
//!    alternating rounds (medians): the publisher never waits for a subscriber, so the rate
//!    holds; after SIGCONT the stopped one reports how many messages it was told it lost.
//! 4. iceoryx2 (`examples/iceoryx2_bus`, built with `cargo build --release --examples`):
//!    the same one-way measure, a publisher process and one subscriber process polling,
//!    the same gap. Left out (null) when that program is not beside this one.

use crate::runtime::bus::{monotonic_ns, Heard, Listen};
use crate::runtime::supervisor::{Shutdown, Subscription, Supervisor, TaskHandle};
use crate::runtime::task::{kinds, Outcome, SpreadKey, TaskSpec};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The longest the benchmark waits for anything.
const WATCHDOG: Duration = Duration::from_secs(60);
const TOPIC: &str = "bench.bus";
const READY: &str = "bench.ready";
/// Alternating rounds of the throughput with all subscribers reading and with one stopped.
const ROUNDS: usize = 5;

/// What to run.
#[derive(Debug, Clone)]
pub struct BusBenchConfig {
    /// Stamped messages per one-way measurement.
    pub samples: u64,
    /// Time between two stamped messages.
    pub gap: Duration,
    /// Messages of each throughput measurement.
    pub messages: u64,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
    /// The iceoryx2 peer program (default: `examples/iceoryx2_bus` beside this one).
    pub iceoryx2: Option<PathBuf>,
}

/// One publisher to some subscribers.
#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    /// Subscribers.
    pub subscribers: usize,
    /// One-way time, p50 of the worst subscriber (ns).
    pub bus_one_way_ns_p50: u64,
    /// One-way time, p99 of the worst subscriber (ns).
    pub bus_one_way_ns_p99: u64,
    /// Messages published per second while they read.
    pub bus_msgs_per_s: f64,
    /// Messages the subscribers missed, in all (told as lags).
    pub lagged: u64,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BusBenchReport {
    /// One subscriber: one-way p50 (ns).
    pub bus_one_way_ns_p50: u64,
    /// One subscriber: one-way p99 (ns).
    pub bus_one_way_ns_p99: u64,
    /// One subscriber: messages published per second.
    pub bus_msgs_per_s: f64,
    /// Four subscribers.
    pub subscribers_4: Fanout,
    /// Four subscribers, one stopped by SIGSTOP: messages published per second.
    pub bus_msgs_per_s_with_stopped_subscriber: f64,
    /// What the stopped subscriber was told it lost, after SIGCONT.
    pub lagged_reported: u64,
    /// iceoryx2, one subscriber: one-way p50 (ns), if its peer program was found.
    pub iceoryx2_one_way_ns_p50: Option<u64>,
    /// iceoryx2, one subscriber: one-way p99 (ns).
    pub iceoryx2_one_way_ns_p99: Option<u64>,
    /// Why iceoryx2 was left out, if it was.
    pub iceoryx2_note: Option<String>,
    /// The gap between stamped messages (ns).
    pub gap_ns: u64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BusBenchError {
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] crate::runtime::supervisor::Error),
    /// A subscriber failed or never ended.
    #[error("{0}")]
    Failed(String),
}

fn failed(why: impl Into<String>) -> BusBenchError {
    BusBenchError::Failed(why.into())
}

/// Waits until `t`, spinning (a sleep would be as long as the scheduler likes).
fn spin_until(t: Instant) {
    while Instant::now() < t {
        std::hint::spin_loop();
    }
}

/// Starts `n` listeners and waits until each has subscribed.
fn listeners(
    sup: &Supervisor,
    ready: &mut Subscription,
    n: usize,
    count: u64,
    stamped: bool,
    poll: bool,
) -> Result<Vec<TaskHandle>, BusBenchError> {
    let l = Listen {
        topic: TOPIC.into(),
        ready: Some(READY.into()),
        count,
        timeout_ms: WATCHDOG.as_millis() as u64,
        stamped,
        poll,
    };
    let input = serde_json::to_vec(&l).map_err(|e| failed(e.to_string()))?;
    // One subscriber an agent.
    let spread = SpreadKey::new();
    let hs = (0..n)
        .map(|_| {
            sup.submit(
                TaskSpec::new(kinds::LISTEN, 0)
                    .with_bytes(input.clone())
                    .spread_by(spread),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    for _ in 0..n {
        ready
            .recv(WATCHDOG)
            .map_err(|e| failed(format!("a subscriber did not subscribe: {e}")))?;
    }
    Ok(hs)
}

/// Ends the listeners and gathers what they heard.
fn heard(sup: &Supervisor, hs: Vec<TaskHandle>) -> Result<Vec<Heard>, BusBenchError> {
    sup.publish(TOPIC, b"end")?;
    hs.into_iter()
        .map(|h| match h.wait(Some(WATCHDOG)) {
            Some(Outcome::Completed { output, .. }) => {
                serde_json::from_slice(&output).map_err(|e| failed(e.to_string()))
            }
            other => Err(failed(format!("a subscriber ended badly: {other:?}"))),
        })
        .collect()
}

/// One-way times to `n` subscribers, then the publishing rate with them reading.
fn fanout(
    sup: &Supervisor,
    ready: &mut Subscription,
    n: usize,
    cfg: &BusBenchConfig,
) -> Result<Fanout, BusBenchError> {
    // One subscriber polls, as iceoryx2's does; four share two cores here, so they sleep
    // until the supervisor wakes them (polling, each would wait for a time slice).
    let hs = listeners(sup, ready, n, u64::MAX, true, n == 1)?;
    let mut next = Instant::now();
    for i in 0..cfg.samples {
        next += cfg.gap;
        spin_until(next);
        let mut msg = monotonic_ns().to_le_bytes().to_vec();
        msg.extend_from_slice(&i.to_le_bytes());
        sup.publish(TOPIC, &msg)?;
    }
    let got = heard(sup, hs)?;
    // The medians and tails of each subscriber, as the subscribers measured them: the
    // fan-out's is the worst subscriber's.
    let p50 = got.iter().map(|h| h.one_way_ns_p50).max().unwrap_or(0);
    let p99 = got.iter().map(|h| h.one_way_ns_p99).max().unwrap_or(0);
    let lagged = got.iter().map(|h| h.lagged).sum();
    let rate = if n == 1 {
        let hs = listeners(sup, ready, n, u64::MAX, false, false)?;
        let rate = blast(sup, cfg.messages)?;
        heard(sup, hs)?;
        rate
    } else {
        0.0 // measured beside the stopped subscriber, in alternating rounds
    };
    Ok(Fanout {
        subscribers: n,
        bus_one_way_ns_p50: p50,
        bus_one_way_ns_p99: p99,
        bus_msgs_per_s: rate,
        lagged,
    })
}

/// Publishes `n` 32-byte messages back to back; messages per second.
fn blast(sup: &Supervisor, n: u64) -> Result<f64, BusBenchError> {
    let mut msg = [0u8; 32];
    let t0 = Instant::now();
    for i in 0..n {
        msg[24..].copy_from_slice(&i.to_le_bytes());
        sup.publish(TOPIC, &msg)?;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}

/// Runs the benchmark.
pub fn run(cfg: &BusBenchConfig) -> Result<BusBenchReport, BusBenchError> {
    let mut b = Supervisor::builder()
        .agents(4)
        .require_cgroups(cfg.require_cgroups)
        .topic(TOPIC)
        .topic(READY)
        .topic_capacity(4096)
        // A subscriber stopped on purpose is not hung.
        .hang_timeout(WATCHDOG);
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    let sup = b.build()?;
    if !super::all_ready(&sup, WATCHDOG) {
        return Err(failed("agents did not become ready"));
    }
    let mut ready = sup.subscribe(READY)?;
    let one = fanout(&sup, &mut ready, 1, cfg)?;
    let mut four = fanout(&sup, &mut ready, 4, cfg)?;
    // Four reading, and one of them stopped, in alternating rounds.
    let hs = listeners(&sup, &mut ready, 4, u64::MAX, false, false)?;
    let victim = sup
        .status()
        .agents
        .iter()
        .find(|a| a.in_flight > 0)
        .map(|a| a.pid)
        .ok_or_else(|| failed("no subscriber to stop"))?;
    let pid = nix::unistd::Pid::from_raw(victim as i32);
    let stop = |sig| nix::sys::signal::kill(pid, sig).map_err(|e| failed(e.to_string()));
    let (mut all, mut stopped) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        all.push(blast(&sup, cfg.messages)?);
        stop(nix::sys::signal::Signal::SIGSTOP)?;
        let rate = blast(&sup, cfg.messages);
        stop(nix::sys::signal::Signal::SIGCONT)?;
        stopped.push(rate?);
        std::thread::sleep(Duration::from_millis(20));
    }
    all.sort_by(f64::total_cmp);
    stopped.sort_by(f64::total_cmp);
    four.bus_msgs_per_s = super::pct(&all, 0.5);
    let stopped_rate = super::pct(&stopped, 0.5);
    let got = heard(&sup, hs)?;
    // The stopped one lagged by far the most.
    let lagged_reported = got.iter().map(|h| h.lagged).max().unwrap_or(0);
    sup.shutdown(Shutdown::Cancel)?;
    let (ice_p50, ice_p99, note) = match iceoryx2(cfg) {
        Ok((p50, p99)) => (Some(p50), Some(p99), None),
        Err(why) => (None, None, Some(why)),
    };
    Ok(BusBenchReport {
        bus_one_way_ns_p50: one.bus_one_way_ns_p50,
        bus_one_way_ns_p99: one.bus_one_way_ns_p99,
        bus_msgs_per_s: one.bus_msgs_per_s,
        subscribers_4: four,
        bus_msgs_per_s_with_stopped_subscriber: stopped_rate,
        lagged_reported,
        iceoryx2_one_way_ns_p50: ice_p50,
        iceoryx2_one_way_ns_p99: ice_p99,
        iceoryx2_note: note,
        gap_ns: cfg.gap.as_nanos() as u64,
    })
}

/// Runs the iceoryx2 peer program: its last line is `{"p50": ns, "p99": ns}`.
fn iceoryx2(cfg: &BusBenchConfig) -> Result<(u64, u64), String> {
    let path = match &cfg.iceoryx2 {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .map(|d| d.join("examples").join("iceoryx2_bus"))
            .ok_or("no directory beside this program")?,
    };
    if !path.exists() {
        return Err(format!(
            "{} not found (cargo build --release --examples)",
            path.display()
        ));
    }
    let out = std::process::Command::new(&path)
        .args(["--samples", &cfg.samples.to_string()])
        .args(["--gap-ns", &cfg.gap.as_nanos().to_string()])
        .output()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).map_err(|e| e.to_string())?;
    match (v["p50"].as_u64(), v["p99"].as_u64()) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(format!("unexpected output: {last}")),
    }
}

/// The report as text.
pub fn render(r: &BusBenchReport) -> String {
    let ice = match (r.iceoryx2_one_way_ns_p50, &r.iceoryx2_note) {
        (Some(p50), _) => format!(
            "iceoryx2, 1 subscriber: one-way {p50} ns p50, {} ns p99 (ours ÷ theirs at p50: {:.2})",
            r.iceoryx2_one_way_ns_p99.unwrap_or(0),
            r.bus_one_way_ns_p50 as f64 / p50.max(1) as f64
        ),
        (None, Some(why)) => format!("iceoryx2: left out: {why}"),
        (None, None) => "iceoryx2: left out".into(),
    };
    format!(
        "bus, 1 subscriber: one-way {} ns p50, {} ns p99; {:.0} msgs/s published\n\
         bus, 4 subscribers: one-way {} ns p50, {} ns p99 (worst subscriber); {:.0} msgs/s\n\
         one of 4 stopped: {:.0} msgs/s ({:.2} of the 1-subscriber rate, {:.2} of 4 reading); it \
         was told it lost {} messages\n{ice}",
        r.bus_one_way_ns_p50,
        r.bus_one_way_ns_p99,
        r.bus_msgs_per_s,
        r.subscribers_4.bus_one_way_ns_p50,
        r.subscribers_4.bus_one_way_ns_p99,
        r.subscribers_4.bus_msgs_per_s,
        r.bus_msgs_per_s_with_stopped_subscriber,
        r.bus_msgs_per_s_with_stopped_subscriber / r.bus_msgs_per_s.max(1e-9),
        r.bus_msgs_per_s_with_stopped_subscriber / r.subscribers_4.bus_msgs_per_s.max(1e-9),
        r.lagged_reported,
    )
}
