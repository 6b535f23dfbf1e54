//! The shared state end to end, through real agent processes: the supervisor's writes and
//! compare-and-sets; agents' strong writes seen by every read that starts after them;
//! eventual writes seen within a bound; a counter incremented by compare-and-set from
//! three agents at once that loses no increment; and writers SIGKILLed one after another while
//! nobody ever reads a torn value.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use neuralflow_swarm::runtime::probes::{check, StateWatch, StateWrite, Watched, Wrote};
use neuralflow_swarm::supervisor::{Consistency, Error, Shutdown, Supervisor, TaskHandle};
use neuralflow_swarm::task::{kinds, Outcome, TaskSpec};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = common::WATCHDOG;

/// These tests share two cores: one at a time.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn start(agents: u32) -> Supervisor {
    swarm::ready(swarm::builder(agents))
}

fn write(sup: &Supervisor, w: &StateWrite) -> TaskHandle {
    sup.submit(TaskSpec::new(kinds::STATE_WRITE, 0).with_bytes(serde_json::to_vec(w).unwrap()))
        .unwrap()
}

fn writer(key: &str, count: u64, strong: bool) -> StateWrite {
    StateWrite {
        key: key.into(),
        count,
        strong,
        gap_us: 0,
        len: 64,
        incr: false,
    }
}

use swarm::output;

#[test]
fn the_supervisor_writes_and_compares_and_sets() {
    let _serial = SERIAL.lock();
    let sup = start(1);
    assert_eq!(sup.state_get(b"mode").unwrap(), None);
    let v1 = sup
        .state_put(b"mode", b"fast", Consistency::Strong)
        .unwrap();
    assert_eq!(
        sup.state_get(b"mode").unwrap(),
        Some((v1, b"fast".to_vec()))
    );
    // A compare-and-set on the wrong version is refused, naming the right one.
    assert_eq!(sup.state_cas(b"mode", v1 + 7, b"slow").unwrap(), Err(v1));
    let v2 = sup.state_cas(b"mode", v1, b"slow").unwrap().unwrap();
    assert!(v2 > v1);
    assert_eq!(
        sup.state_cas(b"new", 0, b"created").unwrap().map(|_| ()),
        Ok(())
    );
    let v3 = sup
        .state_put(b"mode", b"eventual", Consistency::Eventual)
        .unwrap();
    assert!(v3 > v2);
    assert_eq!(sup.state_get(b"mode").unwrap().unwrap().1, b"eventual");
    assert!(matches!(
        sup.state_put(&[b'k'; 65], b"x", Consistency::Strong),
        Err(Error::State(_))
    ));
    assert!(matches!(
        sup.state_put(b"big", &[0; 1000], Consistency::Strong),
        Err(Error::State(_))
    ));
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A strong write by an agent is in the table when it returns: the supervisor, and an
/// agent that reads after, see it. An eventual write shows within a bound.
#[test]
fn agents_writes_are_seen_strong_at_once_and_eventual_soon() {
    let _serial = SERIAL.lock();
    let sup = start(2);
    let wrote: Wrote = output(write(&sup, &writer("strong", 1, true)));
    assert_eq!(wrote.writes, 1);
    let (v, value) = sup
        .state_get(b"strong")
        .unwrap()
        .expect("seen once the write returned");
    assert_eq!(
        check(&value),
        Some((0, u64::from_le_bytes(value[8..16].try_into().unwrap())))
    );
    assert!(v > 0);
    let watch = StateWatch {
        key: "strong".into(),
        duration_ms: 20,
    };
    let h = sup
        .submit(
            TaskSpec::new(kinds::STATE_WATCH, 0).with_bytes(serde_json::to_vec(&watch).unwrap()),
        )
        .unwrap();
    let seen: Watched = output(h);
    assert_eq!((seen.seen, seen.torn), (1, 0), "{seen:?}");
    // Eventual: handed over, applied in the supervisor's next pass.
    let _: Wrote = output(write(&sup, &writer("eventual", 5, false)));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some((_, v)) = sup.state_get(b"eventual").unwrap() {
            if check(&v).is_some_and(|(i, _)| i == 4) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the last eventual write never showed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sup.status().counters.state_writes >= 6);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Three agents increment one counter 300 times each by compare-and-set: every increment
/// lands once (the supervisor orders them; a stale version is refused and retried).
#[test]
fn a_counter_incremented_from_three_agents_by_cas_loses_nothing() {
    let _serial = SERIAL.lock();
    let sup = start(3);
    let spread = neuralflow_swarm::task::SpreadKey::new();
    let hs: Vec<TaskHandle> = (0..3)
        .map(|_| {
            let w = StateWrite {
                incr: true,
                ..writer("counter", 300, true)
            };
            sup.submit(
                TaskSpec::new(kinds::STATE_WRITE, 0)
                    .with_bytes(serde_json::to_vec(&w).unwrap())
                    .spread_by(spread),
            )
            .unwrap()
        })
        .collect();
    for h in hs {
        let _: Wrote = output(h);
    }
    let (_, n) = sup.state_get(b"counter").unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(n[..8].try_into().unwrap()), 900);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Writers (strong and eventual, 400-byte values) on agents SIGKILLed in turn every
/// 100 ms, while the supervisor reads the keys in a loop and agents watch them: no read
/// ever returns a torn value.
#[test]
fn writers_killed_at_random_never_leave_a_torn_value() {
    let _serial = SERIAL.lock();
    let sup = Arc::new(start(3));
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, torn) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (sup, stop, reads, torn) = (sup.clone(), stop.clone(), reads.clone(), torn.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for key in [&b"s"[..], b"e"] {
                    if let Some((_, v)) = sup.state_get(key).unwrap() {
                        reads.fetch_add(1, Ordering::Relaxed);
                        if check(&v).is_none() {
                            torn.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    };
    let chaos = swarm::Chaos::start(sup.clone(), Duration::from_millis(100));
    let mut handles = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for (key, strong) in [("s", true), ("e", false)] {
            handles.push(write(
                &sup,
                &StateWrite {
                    len: 400,
                    gap_us: 50,
                    ..writer(key, 500, strong)
                },
            ));
        }
        let watch = StateWatch {
            key: "s".into(),
            duration_ms: 100,
        };
        handles.push(
            sup.submit(
                TaskSpec::new(kinds::STATE_WATCH, 0)
                    .with_bytes(serde_json::to_vec(&watch).unwrap()),
            )
            .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kills = chaos.stop();
    let mut watched_torn = 0;
    for h in handles {
        if let Some(Outcome::Completed { output, .. }) = h.wait(Some(WATCHDOG)) {
            if let Ok(w) = serde_json::from_slice::<Watched>(&output) {
                watched_torn += w.torn;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(kills >= 5, "{kills} kills");
    assert!(reads.load(Ordering::Relaxed) > 1000);
    assert_eq!(
        torn.load(Ordering::Relaxed),
        0,
        "torn reads in the supervisor"
    );
    assert_eq!(watched_torn, 0, "torn reads in agents");
    swarm::every_buffer_comes_back(&sup, WATCHDOG);
    swarm::shutdown(sup);
}
