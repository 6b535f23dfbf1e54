//! The supervisor as an embedder uses it: this test binary is its own agent (one-binary
//! mode), with task kinds of its own, and each bug found by trying it as a new user would
//! has a regression test named for it.
//!
//! It runs without the libtest harness (`harness = false`): `main` must call
//! `serve_if_agent` before anything else, as an embedder's `main` does. Arguments filter
//! the tests by name, as libtest's do.

use neuralflow_swarm::agent::{serve_if_agent, Registry, RegistryError, TaskContext};
use neuralflow_swarm::supervisor::{CgroupMode, Error, Shutdown, Supervisor};
use neuralflow_swarm::task::{
    kinds, DeathCause, Failure, Outcome, Output, SubTask, TaskError, TaskKind, TaskSpec, ECHO_XOR,
};
use neuralflow_swarm::typed::Task;
use std::collections::BTreeMap;

#[path = "common/harness.rs"]
mod harness;
use harness::{builder, sandbox, wait, WATCHDOG};
use std::time::{Duration, Instant};

/// Exits the agent process with code 101, as a panic that cannot unwind does.
const EXIT_101: TaskKind = TaskKind(1002);
/// Computes for ever without beating.
const FOREVER: TaskKind = TaskKind(1003);
/// Fails with a kind of its own.
const NOT_FOUND: TaskKind = TaskKind(1004);
/// Returns `arg` bytes.
const BYTES: TaskKind = TaskKind(1005);
/// Sums little-endian u64s; more than four of them, it splits into halves merged by ADD.
const SUM: TaskKind = TaskKind(1010);
/// Adds its inputs (each a little-endian u64).
const ADD: TaskKind = TaskKind(1011);
/// Splits into one more of itself, for ever.
const SPLIT_FOREVER: TaskKind = TaskKind(1012);
/// With argument 0, splits into 4,096 of itself with argument 1, which split into 4,096
/// noops each: more subtasks than one task may have below it.
const SPLIT_WIDE: TaskKind = TaskKind(1013);

/// Word counts of one file.
type Counts = BTreeMap<String, u64>;

/// Map: a file's path in, its word counts out.
struct CountWords;

impl Task for CountWords {
    const KIND: TaskKind = TaskKind(1000);
    const NAME: &'static str = "count-words";
    type Input = std::path::PathBuf;
    type Output = Counts;
    fn run(&self, _: &TaskContext<'_>, path: Self::Input) -> Result<Counts, TaskError> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| TaskError::new("io", format!("{}: {e}", path.display())))?;
        let mut counts = Counts::new();
        for w in text.split_whitespace() {
            *counts.entry(w.to_lowercase()).or_default() += 1;
        }
        Ok(counts)
    }
}

/// Reduce: many counts in, their sum out.
struct MergeCounts;

impl Task for MergeCounts {
    const KIND: TaskKind = TaskKind(1001);
    const NAME: &'static str = "merge-counts";
    type Input = Vec<Counts>;
    type Output = Counts;
    fn run(&self, _: &TaskContext<'_>, parts: Vec<Counts>) -> Result<Counts, TaskError> {
        let mut total = Counts::new();
        for (w, n) in parts.into_iter().flatten() {
            *total.entry(w).or_default() += n;
        }
        Ok(total)
    }
}

/// Sleeps the given milliseconds.
struct Nap;

impl Task for Nap {
    const KIND: TaskKind = TaskKind(1006);
    const NAME: &'static str = "nap";
    type Input = u64;
    type Output = ();
    fn run(&self, ctx: &TaskContext<'_>, ms: u64) -> Result<(), TaskError> {
        ctx.sleep(Duration::from_millis(ms));
        Ok(())
    }
}

fn a_dropped_task_set_cancels_what_it_did_not_join() {
    let sup = builder(2).build().unwrap();
    {
        let mut naps = sup.task_set::<Nap>();
        naps.spawn(&1).unwrap();
        for _ in 0..6 {
            naps.spawn(&30_000).unwrap();
        }
        let (_, first) = naps.join_next().expect("one");
        first.expect("the short nap");
    }
    let t = Instant::now();
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the long naps were cancelled"
    );
    assert_eq!((c.completed, c.failed), (1, 6), "{c:?}");
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn registry() -> Registry {
    let mut r = Registry::with_synthetic();
    r.register(SUM, "sum", |ctx| {
        let input = ctx.input();
        if input.len() > 4 * 8 {
            let (a, b) = input.split_at(input.len() / 16 * 8);
            let parts = vec![
                SubTask::new(SUM, 0, a.to_vec()),
                SubTask::new(SUM, 0, b.to_vec()),
            ];
            return ctx.split::<String>(parts, ADD, 0);
        }
        Ok(u64s(input).iter().sum::<u64>().to_le_bytes().to_vec())
    })
    .unwrap();
    r.register(ADD, "add", |ctx| {
        let total: u64 = ctx.inputs().iter().flat_map(|i| u64s(i)).sum();
        Ok::<_, String>(total.to_le_bytes().to_vec())
    })
    .unwrap();
    r.register(SPLIT_WIDE, "split-wide", |ctx| {
        let (kind, arg) = if ctx.arg() == 0 {
            (SPLIT_WIDE, 1)
        } else {
            (kinds::NOOP, 0)
        };
        let parts = (0..4096)
            .map(|_| SubTask::new(kind, arg, Vec::new()))
            .collect();
        ctx.split::<String>(parts, ADD, 0)
    })
    .unwrap();
    r.register(SPLIT_FOREVER, "split-forever", |ctx| {
        ctx.split::<String>(vec![SubTask::new(SPLIT_FOREVER, 0, Vec::new())], ADD, 0)
    })
    .unwrap();
    r.add(CountWords).unwrap();
    r.add(MergeCounts).unwrap();
    r.add(Nap).unwrap();
    r.register(EXIT_101, "exit-101", |_| -> Result<Vec<u8>, String> {
        std::process::exit(101)
    })
    .unwrap();
    r.register(FOREVER, "forever", |_| -> Result<Vec<u8>, String> {
        loop {
            std::hint::spin_loop();
        }
    })
    .unwrap();
    r.register(NOT_FOUND, "not-found", |ctx| {
        Err(TaskError::new(
            "not_found",
            format!("no {}", String::from_utf8_lossy(ctx.input())),
        ))
    })
    .unwrap();
    r.register(BYTES, "bytes", |ctx| {
        Ok::<_, String>(vec![0x5A; ctx.arg() as usize])
    })
    .unwrap();
    r
}

fn word_count_map_reduce_in_one_binary_mode() {
    // 200 files of words, counted by agents that are this very binary.
    let dir = std::env::temp_dir().join(format!("swarm-wordcount-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let words = [
        "swarm", "agent", "ring", "slab", "page", "Task", "task", "merge",
    ];
    let mut expected = Counts::new();
    let paths: Vec<std::path::PathBuf> = (0..200)
        .map(|i| {
            let text: Vec<&str> = (0..50 + i % 13)
                .map(|j| words[(i * 7 + j * 3) % 8])
                .collect();
            for w in &text {
                *expected.entry(w.to_lowercase()).or_default() += 1;
            }
            let p = dir.join(format!("{i}.txt"));
            std::fs::write(&p, text.join(" ")).unwrap();
            p
        })
        .collect();
    // The agents' sandbox lets them read only what they are given.
    let sup = builder(2)
        .sandbox(sandbox(vec![dir.clone()]))
        .build()
        .unwrap();
    let mut maps = sup.task_set::<CountWords>();
    for p in &paths {
        maps.spawn(p).unwrap();
    }
    let mut parts = Vec::new();
    while let Some((_, counts)) = maps.join_next() {
        parts.push(counts.expect("counted"));
    }
    assert_eq!(parts.len(), 200);
    drop(maps);
    // Reduce as a tree: groups of 32, then their sums.
    while parts.len() > 1 {
        let mut merges = sup.task_set::<MergeCounts>();
        for group in parts.chunks(32) {
            merges.spawn(&group.to_vec()).unwrap();
        }
        parts = std::iter::from_fn(|| merges.join_next())
            .map(|(_, r)| r.expect("merged"))
            .collect();
    }
    assert_eq!(parts[0], expected);
    // A file that is not there fails with the kind its handler gave.
    let missing = sup
        .submit_task::<CountWords>(&dir.join("missing.txt"))
        .unwrap();
    match missing.wait(Some(WATCHDOG)).expect("no timeout") {
        Err(Failure::Task(e)) => assert_eq!(e.kind, "io", "{e}"),
        other => panic!("{other:?}"),
    }
    sup.shutdown(Shutdown::Drain).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

fn a_panicking_handler_fails_its_task_with_the_message() {
    let sup = builder(2).build().unwrap();
    let t = Instant::now();
    for _ in 0..3 {
        match wait(&sup, "panic".parse().unwrap()) {
            Outcome::Failed(Failure::Panicked(msg)) => {
                assert!(msg.contains("synthetic panic"), "{msg}");
                assert!(msg.contains("synthetic.rs"), "names where: {msg}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The agents caught it and live on: no death, no restart, and they still work.
    assert!(wait(&sup, "noop".parse().unwrap()).is_completed());
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!((c.agent_restarts, c.failed), (0, 3), "{c:?}");
}

fn an_agent_that_exits_while_running_a_task_blames_that_task() {
    let sup = builder(2).quarantine_after(3).build().unwrap();
    match wait(&sup, TaskSpec::new(EXIT_101, 0)) {
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert_eq!(causes, [DeathCause::Exit(101); 3])
        }
        other => panic!("{other:?}"),
    }
    // The others were not blamed: they all complete.
    for _ in 0..10 {
        assert!(wait(&sup, "noop".parse().unwrap()).is_completed());
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.deaths.get("exit"), Some(&3), "{c:?}");
}

fn a_handler_error_keeps_its_kind_across_the_process_boundary() {
    let sup = builder(1).build().unwrap();
    let spec = TaskSpec::new(NOT_FOUND, 0).with_bytes(b"words.txt".to_vec());
    match wait(&sup, spec) {
        Outcome::Failed(Failure::Task(e)) => {
            assert_eq!(e, TaskError::new("not_found", "no words.txt"))
        }
        other => panic!("{other:?}"),
    }
    sup.shutdown(Shutdown::Drain).unwrap();
}

fn a_payload_larger_than_the_slab_is_refused_at_submit() {
    // 16 buffers of 64 KiB: one task may carry half, 512 KiB.
    let sup = builder(1).buffers(64 * 1024, 16).build().unwrap();
    let t = Instant::now();
    let err = sup.submit(TaskSpec::echo(1 << 20, 1)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{msg}");
    assert!(msg.contains("1048576") && msg.contains("524288"), "{msg}");
    // Nothing behind it waits, and a drain ends.
    match wait(&sup, TaskSpec::echo(512 * 1024, 2)) {
        Outcome::Completed { output, .. } => assert_eq!(output.len(), 512 * 1024),
        other => panic!("{other:?}"),
    }
    sup.shutdown(Shutdown::Drain).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
}

fn a_fan_in_of_many_small_held_outputs_does_not_fill_the_slab() {
    // 2,000 held outputs against 1,024 buffers: each once took a whole buffer.
    const N: usize = 2000;
    let sup = builder(2).build().unwrap();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let spec = TaskSpec::echo(100 + i % 7, i as u64).with_output(Output::Hold);
            sup.submit(spec).unwrap()
        })
        .collect();
    let mut held = Vec::new();
    let mut expected = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.wait(Some(WATCHDOG)).expect("done") {
            Outcome::Completed { held: Some(x), .. } => held.push(x),
            other => panic!("{other:?}"),
        }
        let input = neuralflow_swarm::task::echo_pattern(100 + i % 7, i as u64);
        expected.extend(input.iter().map(|b| b ^ neuralflow_swarm::task::ECHO_XOR));
    }
    assert_eq!(sup.held_buffers(), 0, "small outputs keep no buffer");
    let merge = TaskSpec::new(kinds::CONCAT, 0).with_held(held);
    match wait(&sup, merge) {
        Outcome::Completed { output, .. } => assert!(output == expected, "merged in order"),
        other => panic!("{other:?}"),
    }
    let st = sup.status();
    assert_eq!(st.slab_free, st.slab_buffers, "every buffer came back");
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// An agent writes its outputs into its own pool; one that is kept is copied out of it at
/// once, into the supervisor's pool while half of that stays free for payloads, then into
/// the supervisor's memory. So kept outputs never make an agent wait, whatever the caller
/// keeps, and every byte comes back as written.
fn kept_outputs_past_half_the_pool_go_to_memory_and_nothing_waits() {
    let sup = builder(1).buffers(64 * 1024, 16).build().unwrap();
    let want = |i: u64| vec![0x5A; 100 * 1024 + i as usize];
    let mut held = Vec::new();
    for i in 0..16u64 {
        let spec = TaskSpec::new(BYTES, 100 * 1024 + i).with_output(Output::Hold);
        match wait(&sup, spec) {
            Outcome::Completed { held: Some(x), .. } => held.push(x),
            other => panic!("{other:?}"),
        }
    }
    // Two buffers each: four fit while 8 of the 16 stay free; the other twelve are kept
    // in memory.
    assert_eq!(sup.held_buffers(), 8);
    let st = sup.status();
    assert_eq!(st.slab_free, 8, "{st:?}");
    assert_eq!(
        st.held_inline_bytes,
        (4..16).map(|i| 100 * 1024 + i).sum::<usize>()
    );
    assert_eq!(st.counters.slab_waits, 0, "no agent waited for room");
    // Each goes on as the next task's input, from either place, as written.
    for (i, h) in held.into_iter().enumerate() {
        let spec = TaskSpec::new(kinds::ECHO, 0).with_held(vec![h]);
        match wait(&sup, spec) {
            Outcome::Completed { output, .. } => {
                let back: Vec<u8> = output.iter().map(|b| b ^ ECHO_XOR).collect();
                assert!(back == want(i as u64), "output {i} changed")
            }
            other => panic!("{other:?}"),
        }
    }
    let st = sup.status();
    assert_eq!((st.slab_free, st.held_inline_bytes), (16, 0));
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert!(c.deaths.is_empty(), "{c:?}");
}

fn cpu_bound_handlers_that_never_beat_are_not_killed_as_hung() {
    // Default heartbeat (100 ms) and hang timeout (300 ms); each task computes 1.5 s
    // without a single ctx.beat().
    let sup = builder(2).build().unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| sup.submit("busy:1500ms".parse().unwrap()).unwrap())
        .collect();
    for h in handles {
        let o = h.wait(Some(WATCHDOG)).expect("done");
        assert!(o.is_completed(), "{o:?}");
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert!(c.deaths.is_empty(), "no deaths: {c:?}");
}

fn a_handler_that_never_returns_is_stopped_by_its_kind_timeout() {
    let sup = builder(1)
        .kind_timeout(FOREVER, Duration::from_millis(300))
        .quarantine_after(2)
        .build()
        .unwrap();
    let t = Instant::now();
    match wait(&sup, TaskSpec::new(FOREVER, 0)) {
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert_eq!(causes, [DeathCause::Timeout; 2])
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(600));
    // A task's own limit wins over its kind's.
    let o = wait(
        &sup,
        TaskSpec::new(FOREVER, 0).with_timeout(Duration::from_millis(100)),
    );
    assert!(!o.is_completed());
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.deaths.get("timeout"), Some(&4), "{c:?}");
}

fn sigstop_is_detected_after_three_heartbeat_periods_by_default() {
    let sup = builder(1).build().unwrap();
    assert!(wait(&sup, "noop".parse().unwrap()).is_completed());
    let victim = sup.status().agents[0].clone();
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    while sup.status().agents[0].epoch == victim.epoch {
        assert!(t.elapsed() < WATCHDOG);
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t.elapsed();
    eprintln!("  SIGSTOP to replacement: {took:?}");
    // Three periods of silence (300 ms), measured from the last beat seen, which may
    // come up to a beat interval (half a period) and a health tick before the stop.
    assert!(took >= Duration::from_millis(240), "{took:?}");
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.deaths.get("hang"), Some(&1), "{c:?}");
}

fn a_corrupt_ring_found_by_dispatch_kills_the_agent_as_a_protocol_fault() {
    use neuralflow_swarm::segment::Direction;
    // A small ring, so that the supervisor rereads the agent's counter when it fills.
    let sup = builder(1)
        .ring_capacity(16)
        .queue_depth(16)
        .build()
        .unwrap();
    assert!(wait(&sup, "noop".parse().unwrap()).is_completed());
    let victim = sup.status().agents[0].clone();
    // Freeze the agent so that only the supervisor can find the damage.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    sup.segment()
        .ring_sides(0, Direction::ToAgent)
        .unwrap()
        .scribble_for_tests(1 << 40, 3);
    // The tasks meet the broken ring, and run on the replacement.
    for _ in 0..16 {
        sup.submit_detached("noop".parse().unwrap()).unwrap();
    }
    for _ in 0..16 {
        let (_, o) = sup.recv(Some(WATCHDOG)).expect("a result");
        assert!(o.is_completed(), "{o:?}");
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.deaths.get("protocol"), Some(&1), "{c:?}");
}

fn status_carries_the_isolation_and_its_warnings() {
    let missing = std::env::temp_dir().join("no-such-cgroupfs-here");
    let sup = Supervisor::builder()
        .agents(1)
        .agent_current_exe()
        .cgroup_hierarchy(neuralflow_swarm::cgroup::Hierarchy::V2 {
            root: missing.clone(),
        })
        .build()
        .unwrap();
    let st = sup.status();
    assert_eq!(st.isolation.cgroups, None);
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("without cgroup isolation")),
        "{:?}",
        st.warnings
    );
    assert!(st.kinds.contains(&EXIT_101) && st.kinds.contains(&kinds::NOOP));
    sup.shutdown(Shutdown::Drain).unwrap();
    // Required, it fails build() instead.
    let err = Supervisor::builder()
        .agents(1)
        .agent_current_exe()
        .cgroup_hierarchy(neuralflow_swarm::cgroup::Hierarchy::V2 { root: missing })
        .cgroups(CgroupMode::Required)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("cgroups required"), "{err}");
}

fn register_refuses_a_duplicate_kind() {
    let mut r = registry();
    let err = r
        .register(EXIT_101, "again", |_| Ok::<_, String>(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Duplicate { kind: EXIT_101, .. }),
        "{err}"
    );
}

fn a_kind_the_agent_does_not_serve_is_refused_at_submit() {
    let sup = builder(1).build().unwrap();
    let err = sup.submit(TaskSpec::new(TaskKind(4242), 0)).unwrap_err();
    assert!(
        matches!(err, Error::NoAgentForKind(TaskKind(4242))),
        "{err}"
    );
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A task that splits itself three levels deep (32 numbers, halved down to four): the
/// merges get their subtasks' outputs and the sum comes back as the task's output; one
/// that splits for ever is stopped at the depth limit, failing, without hurting others.
fn tasks_split_themselves_and_merge_their_subtasks() {
    let sup = builder(2).build().unwrap();
    let numbers: Vec<u64> = (1..=32).map(|i| i * 1000 + i).collect();
    let bytes: Vec<u8> = numbers.iter().flat_map(|n| n.to_le_bytes()).collect();
    match wait(&sup, TaskSpec::new(SUM, 0).with_bytes(bytes)) {
        Outcome::Completed { output, .. } => {
            assert_eq!(u64s(&output), [numbers.iter().sum::<u64>()])
        }
        other => panic!("{other:?}"),
    }
    // 32 → 2 × 16 → 4 × 8 → 8 × 4: seven splits, three levels.
    assert_eq!(sup.status().counters.tasks_split, 7);
    match wait(&sup, TaskSpec::new(SPLIT_FOREVER, 0)) {
        Outcome::Failed(Failure::Dependency { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sup.status().counters.tasks_split,
        7 + u64::from(neuralflow_swarm::task::MAX_SPLIT_DEPTH)
    );
    // Under SIGKILL chaos (an agent at once, then every 150 ms while the results come),
    // 2,000 of them all give their sums.
    let handles: Vec<_> = (0..2000u64)
        .map(|k| {
            let numbers: Vec<u64> = (0..32).map(|i| k * 100 + i).collect();
            let bytes: Vec<u8> = numbers.iter().flat_map(|n| n.to_le_bytes()).collect();
            let h = sup.submit(TaskSpec::new(SUM, 0).with_bytes(bytes)).unwrap();
            (h, numbers.iter().sum::<u64>())
        })
        .collect();
    let mut kills = 0;
    let mut last_kill: Option<Instant> = None;
    let kill = |kills: &mut usize| {
        let agents = sup.status().agents;
        let a = &agents[*kills % agents.len()];
        if a.pid != 0 {
            let pid = nix::unistd::Pid::from_raw(a.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            *kills += 1;
        }
    };
    kill(&mut kills);
    for (h, want) in handles {
        let o = loop {
            if let Some(o) = h.wait(Some(Duration::from_millis(1))) {
                break o;
            }
            if last_kill.is_none_or(|t| t.elapsed() >= Duration::from_millis(150)) {
                last_kill = Some(Instant::now());
                kill(&mut kills);
            }
        };
        match o {
            Outcome::Completed { output, .. } => assert_eq!(u64s(&output), [want]),
            other => panic!("{other:?}"),
        }
    }
    eprintln!("2000 split sums under {kills} kills");
    assert!(kills > 0, "no agent was killed");
    // Wide: the sixteenth split of the second level would pass 65,536 subtasks.
    let before = sup.status().counters.tasks_split;
    match wait(&sup, TaskSpec::new(SPLIT_WIDE, 0)) {
        Outcome::Failed(Failure::Dependency { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(sup.status().counters.tasks_split - before, 16);
    assert!(wait(&sup, TaskSpec::new(kinds::NOOP, 0)).is_completed());
    sup.shutdown(Shutdown::Drain).unwrap();
}

const TESTS: &[harness::Test] = tests![
    tasks_split_themselves_and_merge_their_subtasks,
    word_count_map_reduce_in_one_binary_mode,
    a_panicking_handler_fails_its_task_with_the_message,
    an_agent_that_exits_while_running_a_task_blames_that_task,
    a_handler_error_keeps_its_kind_across_the_process_boundary,
    a_payload_larger_than_the_slab_is_refused_at_submit,
    a_fan_in_of_many_small_held_outputs_does_not_fill_the_slab,
    kept_outputs_past_half_the_pool_go_to_memory_and_nothing_waits,
    cpu_bound_handlers_that_never_beat_are_not_killed_as_hung,
    a_handler_that_never_returns_is_stopped_by_its_kind_timeout,
    sigstop_is_detected_after_three_heartbeat_periods_by_default,
    a_corrupt_ring_found_by_dispatch_kills_the_agent_as_a_protocol_fault,
    status_carries_the_isolation_and_its_warnings,
    register_refuses_a_duplicate_kind,
    a_kind_the_agent_does_not_serve_is_refused_at_submit,
    a_dropped_task_set_cancels_what_it_did_not_join,
];

fn main() -> std::process::ExitCode {
    // First thing: started by a supervisor, this process is an agent and never returns.
    serve_if_agent(registry);
    harness::run(TESTS)
}
