//! The supervisor end to end, through real agent processes: chaos kills, hangs, OOM,
//! crashes, crash loops, supervisor death, cgroup limits, payloads.
//!
//! Tests that need cgroups fail (rather than skip) when `SWARM_REQUIRE_CGROUPS=1`.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use neuralflow_swarm::cgroup::{Hierarchy, Limits};
use neuralflow_swarm::supervisor::{
    AgentClass, CgroupMode, Error, RecvError, RestartPolicy, Shutdown, Supervisor,
    SupervisorBuilder,
};
use neuralflow_swarm::task::{
    kinds, DeathCause, Failure, Held, Outcome, Output, TaskId, TaskSpec, ECHO_XOR,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = common::WATCHDOG;

/// Supervisor tests share two cores: run them one at a time so their timing holds.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn cgroups_required() -> bool {
    std::env::var("SWARM_REQUIRE_CGROUPS").is_ok_and(|v| v == "1")
}

fn builder(agents: u32) -> SupervisorBuilder {
    Supervisor::builder()
        .agents(agents)
        .agent_bin(env!("CARGO_BIN_EXE_agent-bin"))
        .cgroups(if cgroups_required() {
            CgroupMode::Required
        } else {
            CgroupMode::Auto
        })
        // Generous: two cores shared with the test harness; the hang tests set their own.
        .hang_timeout(Duration::from_secs(2))
}

/// Whether real cgroups can be used here; without them the test fails under
/// `SWARM_REQUIRE_CGROUPS=1` and is skipped (loudly) otherwise.
fn have_cgroups(test: &str) -> bool {
    let ok = Hierarchy::detect().is_some() && nix::unistd::geteuid().is_root();
    if !ok {
        assert!(
            !cgroups_required(),
            "{test}: cgroups required (SWARM_REQUIRE_CGROUPS=1) but unavailable"
        );
        eprintln!("SKIPPED {test}: needs root and a cgroup hierarchy with memory, cpu and pids");
    }
    ok
}

/// Collects `n` detached results, failing the test if they stop coming.
fn collect(sup: &Supervisor, n: usize) -> HashMap<TaskId, Outcome> {
    let mut got = HashMap::new();
    let deadline = Instant::now() + WATCHDOG;
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} results arrived",
            got.len()
        );
        if let Ok((id, o)) = sup.recv(Some(Duration::from_millis(100))) {
            assert!(got.insert(id, o).is_none(), "task {id} delivered twice");
        }
    }
    assert_eq!(
        sup.recv(Some(Duration::from_millis(50))).map(|_| ()),
        Err(RecvError::Empty),
        "extra results"
    );
    got
}

#[test]
fn chaos_kills_every_100ms_lose_and_double_nothing() {
    let _serial = SERIAL.lock();
    const TASKS: u64 = 10_000;
    let sup = Arc::new(builder(4).build().unwrap());
    let ids: Vec<TaskId> = (0..TASKS)
        .map(|_| sup.submit_detached("spin:200us".parse().unwrap()).unwrap())
        .collect();
    let chaos = swarm::Chaos::start(sup.clone(), Duration::from_millis(100));
    let got = collect(&sup, TASKS as usize);
    let kills = chaos.stop();
    for id in &ids {
        match &got[id] {
            Outcome::Completed { .. } => {}
            other => panic!("task {id}: {other:?}"),
        }
    }
    // The last kill may land after the last result: wait for the supervisor to see it.
    let deadline = Instant::now() + WATCHDOG;
    while sup.status().counters.agent_restarts < kills && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = sup.status().counters;
    eprintln!(
        "kills {kills}, restarts {}, retried {}, deaths {:?}",
        c.agent_restarts, c.tasks_retried, c.deaths
    );
    assert!(
        kills >= 5,
        "the chaos thread should have killed several agents"
    );
    assert_eq!(c.completed, TASKS);
    assert_eq!(
        c.failed, 0,
        "SIGKILL from outside is never the task's fault"
    );
    // Every agent killed is replaced.
    assert!(
        c.agent_restarts >= kills,
        "restarts {} < kills {kills}",
        c.agent_restarts
    );
    assert!(c.deaths.get("signal").copied().unwrap_or(0) >= kills);
    swarm::shutdown(sup);
}

#[test]
fn sigstopped_agent_is_detected_as_hung_and_replaced() {
    let _serial = SERIAL.lock();
    let hang = Duration::from_millis(300);
    let sup = builder(2)
        .heartbeat_period(Duration::from_millis(50))
        .hang_timeout(hang)
        .build()
        .unwrap();
    for _ in 0..400 {
        sup.submit_detached("sleep:2ms".parse().unwrap()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let victim = sup.status().agents[0].clone();
    assert_ne!(victim.pid, 0);
    let stopped_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let detected = loop {
        if sup.status().agents[0].epoch > victim.epoch {
            break stopped_at.elapsed();
        }
        assert!(
            stopped_at.elapsed() < WATCHDOG,
            "stopped agent never replaced"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    eprintln!("SIGSTOP detected and replaced after {detected:?}");
    // Silence is measured from the last beat the supervisor saw, which may come up to a
    // beat interval (half a period) and a health tick before the stop.
    assert!(
        detected >= hang - Duration::from_millis(50),
        "replaced before the hang timeout: {detected:?}"
    );
    assert!(
        detected < hang + Duration::from_secs(1),
        "detection too slow: {detected:?}"
    );
    let got = collect(&sup, 400);
    assert!(got.values().all(Outcome::is_completed));
    let c = sup.status().counters;
    assert_eq!(c.deaths.get("hang"), Some(&1));
    sup.shutdown(Shutdown::Drain).unwrap();
}

#[test]
fn task_that_hangs_is_quarantined_after_three_hangs() {
    let _serial = SERIAL.lock();
    let sup = builder(2)
        .heartbeat_period(Duration::from_millis(40))
        .hang_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let bad = sup.submit("hang".parse().unwrap()).unwrap();
    let good: Vec<_> = (0..50)
        .map(|_| sup.submit("sleep:1ms".parse().unwrap()).unwrap())
        .collect();
    match bad.wait(Some(WATCHDOG)).unwrap() {
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert_eq!(causes, [DeathCause::Hang; 3]);
        }
        other => panic!("{other:?}"),
    }
    for h in good {
        assert!(h.wait(Some(WATCHDOG)).unwrap().is_completed());
    }
    sup.shutdown(Shutdown::Drain).unwrap();
}

#[test]
fn task_timeout_kills_the_agent_and_counts_toward_quarantine() {
    let _serial = SERIAL.lock();
    let sup = builder(2)
        .heartbeat_period(Duration::from_millis(40))
        .build()
        .unwrap();
    let slow = TaskSpec::new(neuralflow_swarm::task::kinds::SLEEP, 5_000_000_000)
        .with_timeout(Duration::from_millis(150));
    let h = sup.submit(slow).unwrap();
    let quick = sup.submit("noop".parse().unwrap()).unwrap();
    match h.wait(Some(WATCHDOG)).unwrap() {
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert_eq!(causes, [DeathCause::Timeout; 3])
        }
        other => panic!("{other:?}"),
    }
    assert!(quick.wait(Some(WATCHDOG)).unwrap().is_completed());
    assert_eq!(sup.status().counters.deaths.get("timeout"), Some(&3));
    sup.shutdown(Shutdown::Drain).unwrap();
}

#[test]
fn crashing_tasks_are_quarantined_and_the_run_goes_on() {
    let _serial = SERIAL.lock();
    let sup = builder(2).build().unwrap();
    let crashes: Vec<_> = (0..4)
        .map(|_| sup.submit("crash".parse().unwrap()).unwrap())
        .collect();
    let fine: Vec<_> = (0..200)
        .map(|_| sup.submit("noop".parse().unwrap()).unwrap())
        .collect();
    for h in crashes {
        match h.wait(Some(WATCHDOG)).unwrap() {
            Outcome::Failed(f @ Failure::Quarantined(_)) => {
                let Failure::Quarantined(causes) = &f else {
                    unreachable!()
                };
                assert_eq!(causes, &[DeathCause::Signal(libc::SIGABRT); 3]);
                assert!(f.to_string().contains("SIGABRT"), "{f}");
            }
            other => panic!("{other:?}"),
        }
    }
    for h in fine {
        assert!(h.wait(Some(WATCHDOG)).unwrap().is_completed());
    }
    let st = sup.status();
    assert!(st.fatal.is_none(), "a poison task is not a crash loop");
    assert_eq!(st.counters.deaths.get("signal"), Some(&12));
    assert_eq!(st.counters.agent_restarts, 12);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Writes an executable shell script into a fresh temporary directory.
fn script(name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("swarm-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn agents_that_die_at_start_trip_the_crash_loop_limit() {
    let _serial = SERIAL.lock();
    // Answers the build-time probe as an agent of this layout, then dies at every start.
    let layout = neuralflow_swarm::segment::VERSION;
    let bin = script(
        "dies-at-start",
        &format!(
            "[ \"$2\" = --probe ] && echo 'neuralflow-swarm agent layout={layout} kinds=1' && exit 0\nexit 3"
        ),
    );
    let sup = Supervisor::builder()
        .agents(2)
        .agent_bin(&bin)
        .cgroups(CgroupMode::Off)
        .restart_policy(RestartPolicy {
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(200),
            intensity: 6,
            period: Duration::from_secs(10),
        })
        .build();
    let sup = match sup {
        Ok(s) => s,
        // Failing at once is as good as failing soon.
        Err(e) => return assert!(e.to_string().contains("crash loop"), "{e}"),
    };
    if let Ok(h) = sup.submit("noop".parse().unwrap()) {
        match h.wait(Some(WATCHDOG)).unwrap() {
            Outcome::Failed(Failure::Cancelled(why)) => assert!(why.contains("agent"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    let err = sup.shutdown(Shutdown::Cancel).unwrap_err();
    assert!(err.to_string().contains("crash loop"), "{err}");
}

#[test]
fn a_wrong_agent_path_is_refused_at_build_naming_the_path() {
    let _serial = SERIAL.lock();
    let not_executable = script("not-executable", "exit 0");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let old_layout = script(
        "old-layout",
        "echo 'neuralflow-swarm agent layout=0 kinds=1'",
    );
    let cases: [(std::path::PathBuf, &str); 4] = [
        ("/nonexistent/agent-bin".into(), "does not exist"),
        ("/bin/false".into(), "is not a neuralflow-swarm agent"),
        (not_executable, "is not executable"),
        (old_layout, "speaks segment layout \"0\""),
    ];
    for (bin, why) in cases {
        let t = Instant::now();
        let err = Supervisor::builder()
            .agents(1)
            .agent_bin(&bin)
            .cgroups(CgroupMode::Off)
            .build()
            .expect_err("a wrong agent must fail build()");
        let msg = err.to_string();
        assert!(matches!(err, Error::AgentBinary { .. }), "{msg}");
        assert!(
            msg.contains(&*bin.to_string_lossy()),
            "names the path: {msg}"
        );
        assert!(msg.contains(why), "{msg}");
        assert!(t.elapsed() < Duration::from_secs(5), "found at once");
    }
}

#[test]
fn memory_hog_is_oom_killed_attributed_and_quarantined() {
    if !have_cgroups("memory_hog_is_oom_killed_attributed_and_quarantined") {
        return;
    }
    let _serial = SERIAL.lock();
    let sup = builder(2)
        .cgroups(CgroupMode::Required)
        .limits(Limits {
            memory_bytes: Some(64 << 20),
            ..Limits::default()
        })
        .build()
        .unwrap();
    let hog = sup.submit("alloc:512M".parse().unwrap()).unwrap();
    let small = sup.submit("alloc:8M".parse().unwrap()).unwrap();
    let rest: Vec<_> = (0..100)
        .map(|_| sup.submit("noop".parse().unwrap()).unwrap())
        .collect();
    match hog.wait(Some(WATCHDOG)).unwrap() {
        Outcome::Failed(Failure::Quarantined(causes)) => assert_eq!(causes, [DeathCause::Oom; 3]),
        other => panic!("{other:?}"),
    }
    assert!(small.wait(Some(WATCHDOG)).unwrap().is_completed());
    for h in rest {
        assert!(h.wait(Some(WATCHDOG)).unwrap().is_completed());
    }
    assert_eq!(sup.status().counters.deaths.get("oom"), Some(&3));
    sup.shutdown(Shutdown::Drain).unwrap();
}

#[test]
fn agent_cgroups_hold_the_configured_limits() {
    if !have_cgroups("agent_cgroups_hold_the_configured_limits") {
        return;
    }
    let _serial = SERIAL.lock();
    let sup = builder(2)
        .cgroups(CgroupMode::Required)
        .limits(Limits {
            memory_bytes: Some(256 << 20),
            cpu_cores: Some(0.5),
            pids: Some(64),
        })
        .build()
        .unwrap();
    // Wait for both agents to be up.
    let deadline = Instant::now() + WATCHDOG;
    while sup.status().agents.iter().any(|a| a.phase != "ready") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = sup.status();
    let read = |p: &std::path::Path, f: &str| {
        std::fs::read_to_string(p.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    for a in &st.agents {
        let pid = a.pid.to_string();
        match st.isolation.cgroups {
            Some("v1") => {
                let [mem, cpu, pids] = &a.cgroup[..] else {
                    panic!("{:?}", a.cgroup)
                };
                assert_eq!(
                    read(mem, "memory.limit_in_bytes"),
                    (256u64 << 20).to_string()
                );
                assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
                assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
                assert_eq!(read(pids, "pids.max"), "64");
                for d in [mem, cpu, pids] {
                    assert!(read(d, "cgroup.procs").lines().any(|l| l == pid), "{d:?}");
                }
            }
            Some("v2") => {
                let [dir] = &a.cgroup[..] else {
                    panic!("{:?}", a.cgroup)
                };
                assert_eq!(read(dir, "memory.max"), (256u64 << 20).to_string());
                assert_eq!(read(dir, "cpu.max"), "50000 100000");
                assert_eq!(read(dir, "pids.max"), "64");
                assert!(read(dir, "cgroup.procs").lines().any(|l| l == pid));
            }
            other => panic!("cgroups required, got {other:?}"),
        }
    }
    let dirs: Vec<_> = st.agents.iter().flat_map(|a| a.cgroup.clone()).collect();
    sup.shutdown(Shutdown::Drain).unwrap();
    for d in dirs {
        assert!(!d.exists(), "{d:?} left behind after shutdown");
    }
}

#[test]
fn v2_layout_end_to_end_on_a_directory_like_cgroupfs() {
    let _serial = SERIAL.lock();
    let root = std::env::temp_dir().join(format!("nfswarm-v2-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    let sup = builder(2)
        .cgroups(CgroupMode::Required)
        .cgroup_hierarchy(Hierarchy::V2 { root: root.clone() })
        .limits(Limits {
            memory_bytes: Some(128 << 20),
            cpu_cores: Some(1.5),
            pids: Some(16),
        })
        .build()
        .unwrap();
    let h = sup.submit("echo:100".parse().unwrap()).unwrap();
    assert!(h.wait(Some(WATCHDOG)).unwrap().is_completed());
    let st = sup.status();
    assert_eq!(st.isolation.cgroups, Some("v2"));
    for a in &st.agents {
        let [dir] = &a.cgroup[..] else { panic!() };
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (128u64 << 20).to_string());
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("pids.max"), "16");
        assert_eq!(read("cgroup.procs"), "0", "the agent joined before exec");
    }
    sup.shutdown(Shutdown::Drain).unwrap();
    let runs: Vec<_> = std::fs::read_dir(root.join("neuralflow-swarm"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("swarm-"))
        .map(|e| e.path())
        .collect();
    assert!(runs.is_empty(), "run directories left: {runs:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn payloads_travel_both_ways_and_every_buffer_comes_back() {
    let _serial = SERIAL.lock();
    let sup = builder(2).buffers(4096, 256).build().unwrap();
    let mut want = HashMap::new();
    for i in 0..3000u64 {
        let spec = TaskSpec::echo(((i * 7919) % 300_000) as usize, i);
        let expect: Vec<u8> = spec.bytes().iter().map(|b| b ^ ECHO_XOR).collect();
        let id = sup.submit_detached(spec).unwrap();
        want.insert(id, expect);
    }
    let got = collect(&sup, 3000);
    for (id, o) in got {
        match o {
            Outcome::Completed { output, .. } => assert!(output == want[&id], "task {id}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    let slab = sup.segment().slab(0);
    assert_eq!(
        slab.free_count(),
        256 + 2 * 128,
        "every page buffer (the supervisor's 256, each agent's 128) is free once idle"
    );
    sup.shutdown(Shutdown::Drain).unwrap();
}

fn held_of(o: Outcome) -> Held {
    match o {
        Outcome::Completed {
            held: Some(h),
            output,
            ..
        } => {
            assert!(output.is_empty(), "a held output is not also copied");
            h
        }
        other => panic!("expected a held output: {other:?}"),
    }
}

/// Outputs kept in the supervisor's pool go on to the next task without a copy through the caller:
/// echo → echo (XOR twice gives the original back), then several fanned into one.
#[test]
fn held_outputs_are_forwarded_and_fanned_in_and_every_buffer_comes_back() {
    let _serial = SERIAL.lock();
    let sup = builder(2).buffers(4096, 256).build().unwrap();
    let mut parts = Vec::new();
    let mut want = Vec::new();
    for i in 0..5u64 {
        let first = TaskSpec::echo(3000 + i as usize * 5000, i).with_output(Output::Hold);
        want.extend_from_slice(first.bytes());
        let h = held_of(sup.submit(first).unwrap().wait(Some(WATCHDOG)).unwrap());
        // Back through echo, still held: XOR twice restores the payload. The forwarded
        // output is taken over by the task (moved: it cannot be given twice) and freed
        // with it.
        let second = TaskSpec::new(kinds::ECHO, 0)
            .with_held(vec![h])
            .with_output(Output::Hold);
        parts.push(held_of(
            sup.submit(second).unwrap().wait(Some(WATCHDOG)).unwrap(),
        ));
    }
    let head = sup.peek_held(&parts[0], 16).unwrap();
    assert_eq!(head, want[..16]);
    let fan_in = TaskSpec::new(kinds::CONCAT, 0).with_held(parts);
    match sup.submit(fan_in).unwrap().wait(Some(WATCHDOG)).unwrap() {
        Outcome::Completed { output, held, .. } => {
            assert!(held.is_none());
            assert!(output == want, "concatenated inputs differ");
        }
        other => panic!("{other:?}"),
    }
    // take_held copies out and frees.
    let kept = |seed| {
        let spec = TaskSpec::echo(10_000, seed).with_output(Output::Hold);
        held_of(sup.submit(spec).unwrap().wait(Some(WATCHDOG)).unwrap())
    };
    let h = kept(9);
    let x: Vec<u8> = TaskSpec::echo(10_000, 9)
        .bytes()
        .iter()
        .map(|b| b ^ ECHO_XOR)
        .collect();
    assert!(sup.take_held(h).unwrap() == x);
    assert_eq!(sup.held_buffers(), 0);
    // A held output that is dropped is freed: it cannot leak.
    let forgotten = kept(10);
    assert_eq!(sup.held_buffers(), 3);
    drop(forgotten);
    assert_eq!(sup.held_buffers(), 0);
    // One from another supervisor is refused, and stays its own.
    let other = builder(1).buffers(4096, 64).build().unwrap();
    let foreign = {
        let spec = TaskSpec::echo(10_000, 11).with_output(Output::Hold);
        held_of(other.submit(spec).unwrap().wait(Some(WATCHDOG)).unwrap())
    };
    let spec = TaskSpec::new(kinds::ECHO, 0).with_held(vec![foreign]);
    assert!(matches!(sup.submit(spec), Err(Error::UnknownHeld)));
    other.shutdown(Shutdown::Drain).unwrap();
    let slab = sup.segment().slab(0);
    let deadline = Instant::now() + WATCHDOG;
    while slab.free_count() != 256 + 2 * 128 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        slab.free_count(),
        256 + 2 * 128,
        "every page buffer comes back"
    );
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Specialists take only their kinds; a kind nobody takes is refused at submit; a task
/// whose agent is killed keeps its held input for the next attempt.
#[test]
fn specialist_classes_get_only_their_kinds_and_held_inputs_survive_kills() {
    let _serial = SERIAL.lock();
    let sup = builder(0)
        .agent_classes(vec![
            AgentClass::new("echoer", 1, Some(vec![kinds::ECHO, kinds::SLEEP])),
            AgentClass::new("idler", 1, Some(vec![kinds::NOOP])),
        ])
        .build()
        .unwrap();
    assert_eq!(sup.status().agents.len(), 2);
    for i in 0..200u64 {
        let o = sup
            .submit(TaskSpec::echo(100, i))
            .unwrap()
            .wait(Some(WATCHDOG))
            .unwrap();
        assert!(matches!(o, Outcome::Completed { slot: 0, .. }), "{o:?}");
        let o = sup
            .submit(TaskSpec::new(kinds::NOOP, 0))
            .unwrap()
            .wait(Some(WATCHDOG))
            .unwrap();
        assert!(matches!(o, Outcome::Completed { slot: 1, .. }), "{o:?}");
    }
    assert!(matches!(
        sup.submit(TaskSpec::new(kinds::SPIN, 1)),
        Err(Error::NoAgentForKind(k)) if k == kinds::SPIN
    ));
    // A held input lent to a task whose agent dies stays for the retry.
    let spec = TaskSpec::echo(50_000, 3).with_output(Output::Hold);
    let original = spec.bytes().to_vec();
    let h = held_of(sup.submit(spec).unwrap().wait(Some(WATCHDOG)).unwrap());
    let pid = sup.status().agents[0].pid;
    // The echoer sleeps first, so the forwarded task waits on its ring when it is killed.
    let _sleep = sup
        .submit(TaskSpec::new(kinds::SLEEP, 300_000_000))
        .unwrap();
    let handle = sup
        .submit(TaskSpec::new(kinds::ECHO, 0).with_held(vec![h]))
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match handle.wait(Some(WATCHDOG)).unwrap() {
        Outcome::Completed {
            output, attempts, ..
        } => {
            assert!(output == original);
            assert_eq!(attempts, 2, "the task was retried after the kill");
        }
        other => panic!("{other:?}"),
    }
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Cancelling: a waiting task is dropped, a running one stops (its agent is replaced,
/// the task is not retried or blamed), and both end at once as cancelled.
#[test]
fn cancel_ends_waiting_and_running_tasks_without_retries() {
    let _serial = SERIAL.lock();
    let sup = builder(1).build().unwrap();
    // The only agent hangs on the first task; the second waits behind it.
    let running = sup.submit(TaskSpec::new(kinds::HANG, 0)).unwrap();
    let waiting = sup.submit(TaskSpec::new(kinds::NOOP, 0)).unwrap();
    let deadline = Instant::now() + WATCHDOG;
    while sup.status().agents[0].in_flight == 0 {
        assert!(
            Instant::now() < deadline,
            "the hang task never reached the agent"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = sup.status().agents[0].pid;
    let t = Instant::now();
    assert!(sup.cancel(running.id()));
    assert!(matches!(
        running.wait(Some(WATCHDOG)),
        Some(Outcome::Failed(Failure::Cancelled(_)))
    ));
    assert!(
        !sup.cancel(running.id()),
        "a finished task cannot be cancelled"
    );
    // The waiting task was queued on the killed agent's ring: it is requeued and runs on
    // the replacement.
    assert!(matches!(
        waiting.wait(Some(WATCHDOG)),
        Some(Outcome::Completed { .. })
    ));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "cancelling waited for the hang timeout"
    );
    assert_ne!(
        sup.status().agents[0].pid,
        pid,
        "the hung agent was replaced"
    );
    // Cancelling one that waits for an agent.
    let blocker = sup
        .submit(TaskSpec::new(kinds::SLEEP, 200_000_000))
        .unwrap();
    let queued: Vec<_> = (0..40)
        .map(|_| sup.submit(TaskSpec::new(kinds::NOOP, 0)).unwrap())
        .collect();
    let last = queued.last().unwrap();
    sup.cancel(last.id());
    assert!(matches!(
        last.wait(Some(WATCHDOG)),
        Some(Outcome::Failed(Failure::Cancelled(_)))
    ));
    assert!(blocker.wait(Some(WATCHDOG)).unwrap().is_completed());
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.deaths.get("hang"), None, "no hang was blamed");
    assert_eq!(c.deaths.get("timeout"), None, "no timeout was blamed");
}

/// Pids of the children of `pid` (all its threads).
#[cfg(feature = "cli")]
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

#[cfg(feature = "cli")]
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for its new parent to reap it has exited.
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

/// The supervisor killed is a `swarm` process, so this test needs feature `cli`.
#[cfg(feature = "cli")]
#[test]
fn sigkilled_supervisor_takes_its_agents_down_and_the_next_start_sweeps() {
    let _serial = SERIAL.lock();
    let mut swarm = std::process::Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "bench",
            "tasks",
            "--agents",
            "3",
            "--tasks",
            "100000000",
            "--task",
            "sleep:10ms",
        ])
        .env("SWARM_AGENT_BIN", env!("CARGO_BIN_EXE_agent-bin"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let spid = swarm.id();
    let deadline = Instant::now() + WATCHDOG;
    let agents = loop {
        let c = children(spid);
        if c.len() >= 3 {
            break c;
        }
        assert!(Instant::now() < deadline, "swarm never started 3 agents");
        std::thread::sleep(Duration::from_millis(10));
    };
    let runs_before = cgroup_runs_of(spid);
    std::thread::sleep(Duration::from_millis(200)); // let them work
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    swarm.wait().unwrap();
    let killed = Instant::now();
    while !agents.iter().all(|&p| gone(p)) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "agents outlived their supervisor by 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "all agents gone {:?} after the supervisor was killed",
        killed.elapsed()
    );
    if have_cgroups("sigkilled_supervisor_takes_its_agents_down_and_the_next_start_sweeps") {
        assert!(!runs_before.is_empty(), "the killed supervisor had cgroups");
        assert!(
            runs_before.iter().all(|p| p.exists()),
            "left behind by the crash, as expected"
        );
        let sup = builder(1).cgroups(CgroupMode::Required).build().unwrap();
        for p in &runs_before {
            assert!(!p.exists(), "{p:?} not swept by the next start");
        }
        sup.shutdown(Shutdown::Drain).unwrap();
    }
}

/// The run directories of supervisor `pid` in every mounted hierarchy.
#[cfg(feature = "cli")]
fn cgroup_runs_of(pid: u32) -> Vec<std::path::PathBuf> {
    let Some(h) = Hierarchy::detect() else {
        return Vec::new();
    };
    let roots = match h {
        Hierarchy::V2 { root } => vec![root],
        Hierarchy::V1 { memory, cpu, pids } => vec![memory, cpu, pids],
    };
    roots
        .iter()
        .flat_map(|r| {
            std::fs::read_dir(r.join("neuralflow-swarm"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("swarm-{pid}-")))
        })
        .collect()
}

#[test]
fn shutdown_cancel_fails_what_is_left() {
    let _serial = SERIAL.lock();
    let sup = builder(1).build().unwrap();
    let hs: Vec<_> = (0..20)
        .map(|_| sup.submit("sleep:50ms".parse().unwrap()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    sup.shutdown(Shutdown::Cancel).unwrap();
    let cancelled = hs
        .iter()
        .filter(|h| matches!(h.try_result(), Some(Outcome::Failed(Failure::Cancelled(_)))))
        .count();
    assert!(cancelled >= 18, "{cancelled}");
}
