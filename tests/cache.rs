//! The shared cache end to end, through real agent processes: concurrent askers of one key
//! compute it once and all get it; an agent SIGKILLed while computing hands the key to the
//! next asker; values past the bounds evict the least recently used; a large value comes
//! whole through page buffers.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use neuralflow_swarm::runtime::probes::{Cached, Got};
use neuralflow_swarm::supervisor::{Shutdown, Supervisor, TaskHandle};
use neuralflow_swarm::task::{kinds, SpreadKey, TaskSpec};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = common::WATCHDOG;

/// These tests share two cores: one at a time.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

use swarm::ready as start;

fn ask(sup: &Supervisor, key: &str, compute_ms: u64, len: usize, spread: SpreadKey) -> TaskHandle {
    let c = Cached {
        key: key.into(),
        compute_ms,
        len,
    };
    sup.submit(
        TaskSpec::new(kinds::CACHED, 0)
            .with_bytes(serde_json::to_vec(&c).unwrap())
            .spread_by(spread),
    )
    .unwrap()
}

fn got(h: TaskHandle) -> Got {
    swarm::output(h)
}

/// Three agents ask for one key at once: one computes (200 ms), the other two wait for it
/// and get it whole; a later ask is a hit at once.
#[test]
fn concurrent_askers_compute_once_and_all_get_the_value() {
    let _serial = SERIAL.lock();
    let sup = start(swarm::builder(3));
    let spread = SpreadKey::new();
    let hs: Vec<TaskHandle> = (0..3)
        .map(|_| ask(&sup, "doc-a", 200, 100_000, spread))
        .collect();
    let all: Vec<Got> = hs.into_iter().map(got).collect();
    assert_eq!(all.iter().filter(|g| g.computed).count(), 1, "{all:?}");
    assert!(all.iter().all(|g| g.whole && g.len == 100_000), "{all:?}");
    let t0 = Instant::now();
    let again = got(ask(&sup, "doc-a", 2000, 100_000, SpreadKey::new()));
    assert!(!again.computed && again.whole);
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "a hit does not compute"
    );
    let c = sup.status().counters;
    assert_eq!((c.cache_misses, c.cache_hits), (1, 3), "{c:?}");
    swarm::every_buffer_comes_back_but(&sup, WATCHDOG, 2);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// The computer is SIGKILLed mid-computation: the key goes to a waiter, which computes it,
/// and the others (the killed task's retry among them) get that value.
#[test]
fn an_agent_killed_while_computing_hands_the_key_on() {
    let _serial = SERIAL.lock();
    let sup = start(swarm::builder(3));
    let spread = SpreadKey::new();
    let first = ask(&sup, "doc-b", 1000, 5000, spread);
    // The first asker is computing: find its agent.
    let deadline = Instant::now() + WATCHDOG;
    let victim = loop {
        if let Some(a) = sup.status().agents.iter().find(|a| a.in_flight > 0) {
            break a.pid;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    };
    std::thread::sleep(Duration::from_millis(100));
    let others: Vec<TaskHandle> = (0..2)
        .map(|_| ask(&sup, "doc-b", 300, 5000, spread))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut all: Vec<Got> = others.into_iter().map(got).collect();
    all.push(got(first));
    assert!(all.iter().all(|g| g.whole), "{all:?}");
    assert_eq!(all.iter().filter(|g| g.computed).count(), 1, "{all:?}");
    assert_eq!(sup.status().counters.cache_handed_over, 1);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// At most 4 keys: the least recently used goes first, and an evicted key is computed
/// again; a key in use is kept.
#[test]
fn the_least_recently_used_value_is_evicted_past_the_bounds() {
    let _serial = SERIAL.lock();
    let sup = start(swarm::builder(1).cache(4, 1 << 20));
    for k in ["k0", "k1", "k2", "k3"] {
        assert!(got(ask(&sup, k, 0, 100, SpreadKey::new())).computed);
    }
    // k0 used again: k1 is now the least recently used.
    assert!(!got(ask(&sup, "k0", 0, 100, SpreadKey::new())).computed);
    assert!(got(ask(&sup, "k4", 0, 100, SpreadKey::new())).computed);
    assert!(
        !got(ask(&sup, "k0", 0, 100, SpreadKey::new())).computed,
        "kept"
    );
    assert!(
        got(ask(&sup, "k1", 0, 100, SpreadKey::new())).computed,
        "evicted"
    );
    assert!(sup.status().counters.cache_evictions >= 2);
    // A value past the byte bound is computed and not kept.
    assert!(got(ask(&sup, "huge", 0, 2 << 20, SpreadKey::new())).computed);
    assert!(got(ask(&sup, "huge", 0, 2 << 20, SpreadKey::new())).computed);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A task declared with one key cannot ask for (or plant a value under) another: it is
/// told to compute for itself, nothing is kept, and the refusal is counted.
#[test]
fn a_task_may_use_only_the_key_it_was_given() {
    let _serial = SERIAL.lock();
    let sup = start(swarm::builder(1));
    let c = Cached {
        key: "someone-else".into(),
        compute_ms: 0,
        len: 100,
    };
    let h = sup
        .submit(
            TaskSpec::new(kinds::CACHED, 0)
                .with_bytes(serde_json::to_vec(&c).unwrap())
                .with_cache_key(b"mine".to_vec()),
        )
        .unwrap();
    assert!(got(h).computed);
    assert_eq!(sup.status().counters.cache_refused, 1);
    // Nothing was planted: the rightful asker finds nothing and computes.
    assert!(got(ask(&sup, "someone-else", 0, 100, SpreadKey::new())).computed);
    assert!(!got(ask(&sup, "someone-else", 0, 100, SpreadKey::new())).computed);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A value outlives the supervisor's ledger sweep (once a second, it frees buffers the
/// supervisor does not know it holds): after two sweeps, and after other values have taken
/// buffers (which would reuse any it wrongly freed), it is still read whole from the cache.
#[test]
fn values_outlive_the_ledger_sweep() {
    let _serial = SERIAL.lock();
    let sup = start(swarm::builder(2));
    let first = got(ask(&sup, "doc-kept", 0, 150_000, SpreadKey::new()));
    assert!(first.computed && first.whole);
    std::thread::sleep(Duration::from_millis(2500));
    for k in 0..4 {
        let other = got(ask(
            &sup,
            &format!("doc-other-{k}"),
            0,
            150_000,
            SpreadKey::new(),
        ));
        assert!(other.whole);
    }
    let again = got(ask(&sup, "doc-kept", 0, 150_000, SpreadKey::new()));
    assert!(!again.computed && again.whole, "{again:?}");
    // Five values kept, of three 64 KiB buffers each.
    swarm::every_buffer_comes_back_but(&sup, WATCHDOG, 15);
    sup.shutdown(Shutdown::Drain).unwrap();
}
