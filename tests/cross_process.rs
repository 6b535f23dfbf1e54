//! The shared-memory core across a real process boundary: `agent-bin` peers forked and
//! exec'd with the segment's descriptor inherited.

mod common;

use common::{Agent, WATCHDOG};
use neuralflow_swarm::descriptor::Descriptor;
use neuralflow_swarm::heartbeat::{Liveness, Observer};
use neuralflow_swarm::peer::{pattern, ECHO_XOR, FLAG_BAD_PAYLOAD, KIND_MSG, KIND_STOP};
use neuralflow_swarm::ring::Wait;
use neuralflow_swarm::segment::{Direction, Segment, SegmentConfig, SegmentSlab};
use neuralflow_swarm::slab::{Owner, Slab};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(buffers: u32, buffer_size: u32) -> SegmentConfig {
    SegmentConfig {
        agent_slots: 2,
        ring_capacity: 256,
        buffer_size,
        buffer_count: buffers,
        agent_buffers: buffers / 2,
        topics: 4,
        topic_capacity: 256,
        state_entries: 1024,
    }
}

#[test]
fn ten_million_descriptors_arrive_in_order_once() {
    const N: u64 = 10_000_000;
    let seg = Segment::create(config(4, 4096)).unwrap();
    let mut tx = seg.producer(1, Direction::ToAgent).unwrap();
    let mut rx = seg.consumer(1, Direction::FromAgent).unwrap();
    let mut agent = Agent::start(&seg, 1, 1, &format!("ring-produce:{N}"));
    tx.push(Descriptor::new(0, 0, KIND_MSG)).unwrap(); // start signal
    let mut expect = 0u64;
    let mut buf = Vec::with_capacity(256);
    while expect < N {
        assert!(
            rx.wait_for_data(Wait::DEFAULT, Some(WATCHDOG)).unwrap(),
            "stream stalled at {expect}"
        );
        buf.clear();
        rx.pop_batch(&mut buf, 256).unwrap();
        for d in &buf {
            // In order and none twice: each id is exactly the next one.
            assert_eq!(d.task_id, expect);
            assert_eq!(d.attempt, 1);
            expect += 1;
        }
    }
    assert!(agent.wait().success());
    assert!(seg
        .ring_sides(1, Direction::FromAgent)
        .unwrap()
        .is_empty()
        .unwrap());
}

/// Supervisor-side bookkeeping for the slab-echo tests.
struct Echo {
    seg: Arc<Segment>,
    slab: Slab<SegmentSlab>,
    /// Task id -> (lent chain, length) for tasks sent and not yet completed.
    in_flight: HashMap<u64, (u64, u64)>,
    completed: BTreeSet<u64>,
    /// Buffers of the supervisor's pool currently lent: capped at half of it, as the
    /// supervisor does.
    lent_buffers: usize,
}

impl Echo {
    fn new(seg: Arc<Segment>) -> Self {
        let slab = seg.slab(0);
        Echo {
            seg,
            slab,
            in_flight: HashMap::new(),
            completed: BTreeSet::new(),
            lent_buffers: 0,
        }
    }

    fn payload_len(task_id: u64, buffer_size: u64) -> usize {
        // 0 bytes, sub-buffer sizes, exact multiples and multi-buffer chains.
        match task_id % 5 {
            0 => 0,
            1 => 1 + (task_id % 300) as usize,
            2 => buffer_size as usize,
            3 => 2 * buffer_size as usize + 17,
            _ => (task_id % (3 * buffer_size)) as usize,
        }
    }

    /// Lends a payload for `task_id`; `None` when the slab is momentarily full.
    fn lend(&mut self, task_id: u64, attempt: u32) -> Option<Descriptor> {
        let len = Self::payload_len(task_id, self.slab.buffer_size() as u64);
        let parts = self.parts(len as u64);
        if self.lent_buffers + parts > self.slab.capacity(Owner::Supervisor) as usize / 2 {
            return None;
        }
        self.lent_buffers += parts;
        let h = self
            .slab
            .write_payload(Owner::Supervisor, &pattern(task_id, len))
            .ok()?;
        self.in_flight.insert(task_id, (h.to_raw(), len as u64));
        let mut d = Descriptor::new(task_id, attempt, KIND_MSG);
        d.buffer = h.to_raw();
        d.len = len as u64;
        Some(d)
    }

    fn parts(&self, len: u64) -> usize {
        (len as usize).div_ceil(self.slab.buffer_size()).max(1)
    }

    fn unlend(&mut self, lent: u64, len: u64) {
        self.slab
            .release_chain(lent, len, Owner::Supervisor)
            .unwrap();
        self.lent_buffers -= self.parts(len);
    }

    /// Checks one completion from `slot` and frees both chains.
    fn complete(&mut self, d: &Descriptor, slot: u32) {
        assert_eq!(
            d.flags & FLAG_BAD_PAYLOAD,
            0,
            "agent saw a bad payload for {}",
            d.task_id
        );
        self.slab
            .claim_chain(d.buffer, d.len, Owner::Agent(slot), Owner::Supervisor)
            .unwrap();
        let reply = self
            .slab
            .read_payload(d.buffer, d.len, Owner::Supervisor)
            .unwrap();
        let (lent, len) = self
            .in_flight
            .remove(&d.task_id)
            .unwrap_or_else(|| panic!("completion for unknown or finished task {}", d.task_id));
        assert_eq!(d.len, len);
        let want: Vec<u8> = pattern(d.task_id, len as usize)
            .iter()
            .map(|b| b ^ ECHO_XOR)
            .collect();
        assert_eq!(reply, want, "payload of task {}", d.task_id);
        self.slab
            .release_chain(d.buffer, d.len, Owner::Supervisor)
            .unwrap();
        self.unlend(lent, len);
        assert!(
            self.completed.insert(d.task_id),
            "task {} completed twice",
            d.task_id
        );
    }

    /// Sends tasks `ids` to `slot`, collecting completions, until all are done or
    /// `stop_after` completions have been seen. Returns the ids not yet sent.
    fn run(
        &mut self,
        slot: u32,
        attempt: u32,
        mut ids: Vec<u64>,
        stop_after: Option<usize>,
    ) -> Vec<u64> {
        let mut tx = self.seg.producer(slot, Direction::ToAgent).unwrap();
        let mut rx = self.seg.consumer(slot, Direction::FromAgent).unwrap();
        ids.reverse();
        let mut done_here = 0;
        let deadline = Instant::now() + WATCHDOG;
        let mut buf = Vec::new();
        while !(ids.is_empty() && self.in_flight.is_empty()) {
            assert!(Instant::now() < deadline, "echo stalled");
            // Keep the ring fed while the slab has room.
            while let Some(&id) = ids.last() {
                let Some(d) = self.lend(id, attempt) else {
                    break;
                };
                match tx.push(d) {
                    Ok(()) => {
                        ids.pop();
                    }
                    Err(_) => {
                        let (lent, len) = self.in_flight.remove(&id).unwrap();
                        self.unlend(lent, len);
                        break;
                    }
                }
            }
            buf.clear();
            rx.pop_batch(&mut buf, 64).unwrap();
            if buf.is_empty() {
                rx.wait_for_data(Wait::DEFAULT, Some(Duration::from_millis(5)))
                    .unwrap();
            }
            for d in &buf {
                self.complete(d, slot);
                done_here += 1;
            }
            if stop_after.is_some_and(|n| done_here >= n) {
                break;
            }
        }
        ids.reverse();
        ids
    }

    fn stop(&mut self, slot: u32) {
        let mut tx = self.seg.producer(slot, Direction::ToAgent).unwrap();
        tx.push_wait(
            Descriptor::new(0, 0, KIND_STOP),
            Wait::DEFAULT,
            Some(WATCHDOG),
        )
        .unwrap();
    }
}

#[test]
fn payloads_travel_through_the_slab_and_back() {
    const TASKS: u64 = 20_000;
    let seg = Segment::create(config(128, 1024)).unwrap();
    let mut agent = Agent::start(&seg, 0, 1, "slab-echo:8");
    let mut echo = Echo::new(seg.clone());
    let left = echo.run(0, 1, (0..TASKS).collect(), None);
    assert!(left.is_empty());
    echo.stop(0);
    assert!(agent.wait().success());
    assert_eq!(echo.completed.len() as u64, TASKS);
    assert!(echo.completed.iter().copied().eq(0..TASKS));
    assert_eq!(
        echo.slab.free_count(),
        128 + 2 * 64,
        "every buffer of every pool is free at the end"
    );
}

#[test]
fn sigkill_mid_stream_reclaims_buffers_and_resets_for_a_new_incarnation() {
    const TASKS: u64 = 6_000;
    let seg = Segment::create(config(96, 512)).unwrap();
    let mut echo = Echo::new(seg.clone());
    let mut agent = Agent::start(&seg, 1, 1, "slab-echo:16");
    let left = echo.run(1, 1, (0..TASKS).collect(), Some(2_000));
    agent.kill9();
    let status = agent.wait();
    assert!(!status.success());

    // Recovery, in the order the supervisor will do it: drain completions the agent
    // published before dying (their buffers are still recorded against it), then reclaim
    // whatever else the ledger says it held.
    let mut rx = seg.consumer(1, Direction::FromAgent).unwrap();
    let mut buf = Vec::new();
    rx.pop_batch(&mut buf, usize::MAX).unwrap();
    drop(rx);
    for d in &buf {
        echo.complete(d, 1);
    }
    let reclaimed = echo.slab.reclaim(Owner::Agent(1));
    assert_eq!(echo.slab.held_by(Owner::Agent(1)), 0);
    // What is left held is exactly the supervisor's lent payloads of unfinished tasks.
    let lent_buffers: usize = echo
        .in_flight
        .values()
        .map(|&(_, len)| (len as usize).div_ceil(512).max(1))
        .sum();
    assert_eq!(echo.slab.held_by(Owner::Supervisor), lent_buffers);
    assert_eq!(echo.slab.free_in(Owner::Supervisor) + lent_buffers, 96);
    assert_eq!(echo.slab.free_in(Owner::Agent(1)), 48);
    eprintln!("reclaimed {reclaimed} buffers from the killed agent");

    // Reset both rings and the heartbeat for incarnation 2, requeue the unfinished tasks
    // with the attempt raised.
    for dir in [Direction::ToAgent, Direction::FromAgent] {
        seg.ring_sides(1, dir).unwrap().reset();
    }
    seg.heartbeat(1).unwrap().reset();
    let mut requeue: Vec<u64> = echo.in_flight.keys().copied().collect();
    for (lent, len) in echo.in_flight.drain().map(|(_, v)| v).collect::<Vec<_>>() {
        echo.unlend(lent, len);
    }
    requeue.sort_unstable();
    requeue.extend(left);
    let mut agent = Agent::start(&seg, 1, 2, "slab-echo:16");
    let rest = echo.run(1, 2, requeue, None);
    assert!(rest.is_empty());
    echo.stop(1);
    assert!(agent.wait().success());

    // Every task completed exactly once (`complete` asserts no duplicates), none lost.
    assert!(echo.completed.iter().copied().eq(0..TASKS));
    assert_eq!(echo.slab.free_count(), 96 + 2 * 48);
}

#[test]
fn killed_holder_loses_exactly_its_buffers_and_heartbeat_goes_stale() {
    let seg = Segment::create(config(16, 256)).unwrap();
    let slab = seg.slab(0);
    let keep = slab.alloc(Owner::Agent(0)).unwrap(); // another agent's buffer
    let mut rx = seg.consumer(1, Direction::FromAgent).unwrap();
    let mut agent = Agent::start(&seg, 1, 7, "slab-hold:5");
    let msg = rx.pop_wait(Wait::DEFAULT, Some(WATCHDOG)).unwrap();
    assert_eq!(msg.task_id, 5);
    assert_eq!(slab.held_by(Owner::Agent(1)), 5);

    let hb = seg.heartbeat(1).unwrap();
    let mut obs = Observer::new(7, Instant::now());
    let deadline = Instant::now() + WATCHDOG;
    // Beating: seen to change.
    let first = obs.observe(hb, Instant::now());
    assert_eq!(first, Liveness::Alive);
    let v0 = hb.raw();
    while hb.raw() == v0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(obs.observe(hb, Instant::now()), Liveness::Alive);
    assert_eq!(hb.reported_pid(), agent.child.id());

    agent.kill9();
    agent.wait();
    let silent_from = Instant::now();
    obs.observe(hb, silent_from);
    let later = silent_from + Duration::from_millis(300);
    assert!(
        matches!(obs.observe(hb, later), Liveness::Stale(d) if d >= Duration::from_millis(300))
    );
    // A supervisor watching for the next incarnation sees this one as a ghost.
    let mut next = Observer::new(8, Instant::now());
    assert_eq!(
        next.observe(hb, Instant::now()),
        Liveness::OtherIncarnation { found: 7 }
    );

    assert_eq!(slab.reclaim(Owner::Agent(1)), 5);
    assert_eq!(slab.held_by(Owner::Agent(1)), 0);
    slab.check(keep, Owner::Agent(0))
        .expect("the other agent's buffer is untouched");
    assert_eq!(slab.free_in(Owner::Agent(0)), 7);
    assert_eq!(slab.free_in(Owner::Agent(1)), 8);
    assert_eq!(slab.free_in(Owner::Supervisor), 16);
}

#[test]
fn agent_refuses_a_segment_that_does_not_validate() {
    use std::os::fd::AsRawFd;
    let garbage = || {
        let fd = nix::sys::memfd::memfd_create("not-a-segment", nix::sys::memfd::MFdFlags::empty())
            .unwrap();
        nix::unistd::ftruncate(&fd, 8192).unwrap();
        nix::unistd::write(&fd, b"GARBAGE!").unwrap();
        fd
    };
    let fds = [garbage(), garbage(), garbage()];
    let n = |i: usize| fds[i].as_raw_fd().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent-bin"))
        .args([
            "--segment-fd",
            &n(0),
            "--slot-fd",
            &n(1),
            "--common-fd",
            &n(2),
        ])
        .args(["--slot", "3"])
        .args(["--peer", "ring-echo:spin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("slot 3") && err.contains("wrong magic"),
        "{err}"
    );
}
