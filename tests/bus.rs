//! The bus end to end, through real agent processes: the supervisor to agents and agents
//! to the supervisor and to each other, in order per publisher; a stopped subscriber that
//! holds nobody up and learns that it lagged; progress reports; a cancelled task skipped
//! by the agent it waited on; the control topic closed to agents; and publishers and
//! subscribers SIGKILLed one after another while every message heard stays whole and in order.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use neuralflow_swarm::bus::BusError;
use neuralflow_swarm::runtime::bus::{Heard, Listen, Progress, CONTROL_TOPIC, PROGRESS_TOPIC};
use neuralflow_swarm::supervisor::{
    Error, Shutdown, Subscription, Supervisor, SupervisorBuilder, TaskHandle,
};
use neuralflow_swarm::task::{kinds, Failure, Outcome, SpreadKey, TaskSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = common::WATCHDOG;

/// These tests share two cores: one at a time.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn builder(agents: u32) -> SupervisorBuilder {
    swarm::builder(agents).topic("news").topic("ready")
}

use swarm::ready as start;

/// Listeners spread over agents, one each while there are agents that have none.
static LISTENERS: std::sync::LazyLock<SpreadKey> = std::sync::LazyLock::new(SpreadKey::new);

fn listen(sup: &Supervisor, topic: &str, count: u64, timeout_ms: u64) -> TaskHandle {
    let l = Listen {
        topic: topic.into(),
        ready: Some("ready".into()),
        count,
        timeout_ms,
        stamped: false,
        poll: false,
    };
    let spec = TaskSpec::new(kinds::LISTEN, 0)
        .with_bytes(serde_json::to_vec(&l).unwrap())
        .spread_by(*LISTENERS);
    sup.submit(spec).unwrap()
}

fn publish(sup: &Supervisor, topic: &str, msg: &str, count: u64) -> TaskHandle {
    let input = format!("{topic}\n{msg}").into_bytes();
    sup.submit(TaskSpec::new(kinds::PUBLISH, count).with_bytes(input))
        .unwrap()
}

fn heard(h: TaskHandle) -> Heard {
    swarm::output(h)
}

/// Waits until `n` listeners said they are subscribed.
fn readies(ready: &mut Subscription, n: usize) {
    for _ in 0..n {
        let m = ready.recv(WATCHDOG).expect("a listener's ready");
        assert_eq!(m.bytes, b"ready");
    }
}

/// The supervisor publishes; two agents hear every message, in order; so does a
/// subscription of the supervisor's own.
#[test]
fn the_supervisor_publishes_and_every_agent_hears_it_in_order() {
    let _serial = SERIAL.lock();
    let sup = start(builder(2).topic_capacity(1024));
    let mut ready = sup.subscribe("ready").unwrap();
    let mut mine = sup.subscribe("news").unwrap();
    let listeners: Vec<TaskHandle> = (0..2).map(|_| listen(&sup, "news", 500, 30_000)).collect();
    readies(&mut ready, 2);
    for i in 0..500u64 {
        // Mostly inline; every tenth large, by page buffer.
        let mut msg = if i % 10 == 0 {
            vec![b'x'; 100_000]
        } else {
            b"sup".to_vec()
        };
        msg.extend_from_slice(&i.to_le_bytes());
        assert_eq!(sup.publish("news", &msg).unwrap(), i);
    }
    for h in listeners {
        let got = heard(h);
        assert_eq!((got.received, got.lagged), (500, 0), "{got:?}");
        assert!(got.in_order && got.finished, "{got:?}");
    }
    for i in 0..500u64 {
        let m = mine.try_recv().unwrap();
        assert_eq!(m.seq, i);
        assert_eq!(m.publisher, 0);
        assert_eq!(m.bytes[m.bytes.len() - 8..], i.to_le_bytes());
        assert_eq!(m.bytes.len(), if i % 10 == 0 { 100_008 } else { 11 });
    }
    assert_eq!(mine.try_recv(), Err(BusError::Empty));
    // Unknown topics and the control topic are refused.
    assert!(matches!(sup.publish("nope", b"x"), Err(Error::Topic(_))));
    assert!(matches!(
        sup.publish(CONTROL_TOPIC, b"x"),
        Err(Error::Topic(_))
    ));
    assert!(sup.subscribe("nope").is_err());
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// An agent publishes; another agent and the supervisor hear its messages in order, with
/// the agent as their publisher. Agents cannot publish on the control topic.
#[test]
fn agents_publish_to_each_other_and_to_the_supervisor() {
    let _serial = SERIAL.lock();
    let sup = start(builder(2).topic_capacity(1024));
    let mut ready = sup.subscribe("ready").unwrap();
    let mut mine = sup.subscribe("news").unwrap();
    let listener = listen(&sup, "news", 300, 30_000);
    readies(&mut ready, 1);
    let who = sup
        .status()
        .agents
        .iter()
        .find(|a| a.in_flight == 0)
        .map(|a| a.slot)
        .unwrap();
    // Short messages go inline in the descriptor, long ones by the agent's page buffers.
    // One after the other, each to the idle agent (least-loaded), not behind the listener.
    let short = publish(&sup, "news", "", 200);
    assert!(short.wait(Some(WATCHDOG)).unwrap().is_completed());
    let long = publish(&sup, "news", &"y".repeat(5000), 100);
    assert!(long.wait(Some(WATCHDOG)).unwrap().is_completed());
    let got = heard(listener);
    assert_eq!((got.received, got.lagged), (300, 0), "{got:?}");
    assert!(got.in_order, "{got:?}");
    let mut by_len = std::collections::HashMap::<usize, u64>::new();
    for _ in 0..300 {
        let m = mine.try_recv().unwrap();
        assert_eq!(m.publisher, who + 1);
        let index = u64::from_le_bytes(m.bytes[m.bytes.len() - 8..].try_into().unwrap());
        let next = by_len.entry(m.bytes.len()).or_default();
        assert_eq!(index, *next, "in order per run");
        *next += 1;
    }
    assert_eq!(by_len[&12], 200);
    assert_eq!(by_len[&5012], 100);
    let refused = sup.status().counters.bus_refused;
    let bad = publish(&sup, CONTROL_TOPIC, "cancel everything", 1);
    match bad.wait(Some(WATCHDOG)).unwrap() {
        Outcome::Failed(Failure::Task(e)) => assert!(e.message.contains("supervisor"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sup.status().counters.bus_refused, refused);
    // The 100 long messages (a page buffer each) stay in the topic's slots, readable by a
    // late subscriber, until the topic wraps over them; every other buffer comes back.
    swarm::every_buffer_comes_back_but(&sup, WATCHDOG, 100);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A subscriber stopped with SIGSTOP holds the publisher up not at all; once it runs
/// again it is told it lagged, by how many, and hears what came after.
#[test]
fn a_stopped_subscriber_holds_nobody_up_and_learns_it_lagged() {
    let _serial = SERIAL.lock();
    let sup = start(builder(1).topic_capacity(64));
    let mut ready = sup.subscribe("ready").unwrap();
    let listener = listen(&sup, "news", 1_000_000, 30_000);
    readies(&mut ready, 1);
    let pid = nix::unistd::Pid::from_raw(sup.status().agents[0].pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let start = Instant::now();
    for i in 0..10_000u64 {
        sup.publish("news", &[b"m".as_slice(), &i.to_le_bytes()].concat())
            .unwrap();
    }
    let took = start.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    sup.publish("news", b"end").unwrap();
    let got = heard(listener);
    assert!(
        got.finished && got.lagged > 0 && got.lag_events >= 1,
        "{got:?}"
    );
    assert!(
        got.received <= 64 && got.received + got.lagged <= 10_000,
        "{got:?}"
    );
    assert!(got.in_order, "{got:?}");
    // Ten thousand publishes without a reader: no wait in them (a generous bound).
    assert!(took < Duration::from_secs(5), "{took:?}");
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Progress reports reach `status()` and the progress topic.
#[test]
fn progress_shows_in_status_and_on_its_topic() {
    let _serial = SERIAL.lock();
    let sup = start(builder(1));
    let mut topic = sup.subscribe(PROGRESS_TOPIC).unwrap();
    let h = sup.submit(TaskSpec::new(kinds::PROGRESS, 50)).unwrap();
    let mut seen_in_status = false;
    let mut reports = Vec::new();
    let deadline = Instant::now() + WATCHDOG;
    while reports.len() < 50 && Instant::now() < deadline {
        if let Ok(m) = topic.recv(Duration::from_millis(10)) {
            assert_eq!(m.publisher, 1);
            reports.push(Progress::decode(&m.bytes).unwrap());
        }
        seen_in_status |= sup.status().agents[0]
            .progress
            .is_some_and(|p| p.task == h.id().get() && p.total == 50);
    }
    assert!(h.wait(Some(WATCHDOG)).unwrap().is_completed());
    assert!(seen_in_status);
    let done: Vec<u32> = reports.iter().map(|p| p.done).collect();
    assert_eq!(done, (1..=50).collect::<Vec<_>>());
    assert!(
        sup.status().agents[0].progress.is_none(),
        "gone with its task"
    );
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A task cancelled while it waits on an agent's ring behind another is skipped there:
/// it never runs (it would publish), and the agent is not killed for it.
#[test]
fn a_task_cancelled_while_queued_on_an_agent_is_skipped() {
    let _serial = SERIAL.lock();
    let sup = start(builder(1));
    let mut news = sup.subscribe("news").unwrap();
    let first = sup.submit("sleep:300ms".parse().unwrap()).unwrap();
    let second = publish(&sup, "news", "should not run", 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sup.status().agents[0].in_flight, 2, "both on the agent");
    assert!(sup.cancel(second.id()));
    assert!(first.wait(Some(WATCHDOG)).unwrap().is_completed());
    // Whatever the agent did with it has reached the supervisor by the next task's end.
    assert!(sup
        .submit(TaskSpec::new(kinds::NOOP, 0))
        .unwrap()
        .wait(Some(WATCHDOG))
        .unwrap()
        .is_completed());
    assert_eq!(
        news.try_recv(),
        Err(BusError::Empty),
        "the cancelled task ran"
    );
    let status = sup.status();
    assert_eq!(status.agents[0].restarts, 0);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Publishers and subscribers on agents SIGKILLed in turn every 150 ms: every message
/// the supervisor hears is whole and in order per publisher's run, and the swarm goes on.
#[test]
fn publishers_and_subscribers_killed_at_random_never_tear_or_reorder() {
    let _serial = SERIAL.lock();
    let sup = Arc::new(start(builder(3).topic_capacity(256)));
    let mut news = sup.subscribe("news").unwrap();
    let chaos = swarm::Chaos::start(sup.clone(), Duration::from_millis(150));
    let mut handles = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut heard_ok = 0u64;
    let mut lagged = 0u64;
    let mut last: std::collections::HashMap<(u32, Vec<u8>), u64> = Default::default();
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        handles.push(publish(&sup, "news", &format!("r{round:04}"), 200));
        handles.push(listen(&sup, "news", 100, 200));
        let stop = Instant::now() + Duration::from_millis(50);
        while Instant::now() < stop {
            match news.try_recv() {
                Ok(m) => {
                    if m.bytes == b"ready" {
                        continue;
                    }
                    // "rNNNN", pid, index: 17 bytes, from an agent.
                    assert_eq!(m.bytes.len(), 17, "whole");
                    assert!(m.bytes.starts_with(b"r") && m.publisher >= 1);
                    let (run, tail) = m.bytes.split_at(9);
                    let index = u64::from_le_bytes(tail.try_into().unwrap());
                    let key = (m.publisher, run.to_vec());
                    if let Some(&prev) = last.get(&key) {
                        assert!(index > prev, "in order per run");
                    }
                    last.insert(key, index);
                    heard_ok += 1;
                }
                Err(BusError::Lagged(n)) => lagged += n,
                Err(BusError::Empty) => std::thread::sleep(Duration::from_micros(200)),
                Err(BusError::Corrupt) => panic!("a corrupt message"),
            }
        }
    }
    let kills = chaos.stop();
    for h in handles {
        // Each ends: done, or (its agent killed too often) quarantined.
        let _ = h.wait(Some(WATCHDOG)).expect("every task ends");
    }
    assert!(kills >= 5, "{kills} kills");
    assert!(heard_ok > 1000, "heard {heard_ok}, lagged {lagged}");
    // The swarm still serves, and the bus still carries.
    let mut ready = sup.subscribe("ready").unwrap();
    let l = listen(&sup, "news", 10, 30_000);
    readies(&mut ready, 1);
    for i in 0..10u64 {
        sup.publish("news", &i.to_le_bytes()).unwrap();
    }
    assert_eq!(heard(l).received, 10);
    swarm::every_buffer_comes_back(&sup, WATCHDOG);
    swarm::shutdown(sup);
}
