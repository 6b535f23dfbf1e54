//! Hostile agents: handlers, built on the library's own agent API, that do what a document
//! that took over its agent would try. For each, the offender dies (or is refused) with a
//! cause that says so, its task is blamed by the usual rules, and no other agent dies and
//! no other task is lost or changed.
//!
//! One-binary mode, like `embedder`: this test program is its own agent. Under
//! `SWARM_REQUIRE_CGROUPS=1` the sandbox is required as well, so a measure this kernel
//! refuses fails the suite instead of weakening it.

use neuralflow_swarm::agent::{serve_if_agent, Registry, TaskContext};
use neuralflow_swarm::cgroup::Limits;
use neuralflow_swarm::sandbox::{Measure, MeasureState};
use neuralflow_swarm::supervisor::{Shutdown, Supervisor};
use neuralflow_swarm::task::{
    DeathCause, Failure, Outcome, Output, TaskError, TaskKind, TaskSpec, ECHO_XOR,
};
use std::time::Duration;

#[path = "common/harness.rs"]
mod harness;
#[path = "common/swarm.rs"]
mod swarm;
use harness::{builder, cgroups_required, sandbox, wait, WATCHDOG};

/// Opens a TCP socket to 127.0.0.1, port `arg`.
const NET: TaskKind = TaskKind(2000);
/// Forks for ever.
const FORK_BOMB: TaskKind = TaskKind(2001);
/// Replaces itself with a shell.
const EXEC: TaskKind = TaskKind(2002);
/// Attaches `ptrace` to the process `arg`.
const PTRACE: TaskKind = TaskKind(2003);
/// Sends SIGKILL to the process `arg`.
const KILL: TaskKind = TaskKind(2004);
/// Duplicates its descriptors.
const DUP: TaskKind = TaskKind(2005);
/// Reads the file named by its input, and returns it.
const READ: TaskKind = TaskKind(2006);
/// Creates the file named by its input.
const WRITE: TaskKind = TaskKind(2007);
/// Closes every descriptor it has but the standard three.
const CLOSE_FDS: TaskKind = TaskKind(2008);
/// Allocates and touches `arg` MiB.
const HOG: TaskKind = TaskKind(2009);
/// Returns its pid (the test reads the agent's `/proc/PID/status` from outside).
const PID: TaskKind = TaskKind(2010);
/// Maps every segment file it inherited read-write, as far as the kernel lets it, and
/// writes random bytes over all it got for `arg` ms. Returns how many files it could write
/// and how many were refused.
const SCRIBBLE: TaskKind = TaskKind(2011);
/// Exits at step `arg` of the protocol: 0 while running its task; 1 once it has written
/// its task's completion into its ring by hand; 2 just after its task, between tasks; 3
/// while its 4 MiB output is being written into its pool.
const EXIT_AT: TaskKind = TaskKind(2015);
/// Writes completions into its own from-agent ring for tasks that are not its own: task
/// `arg` (done before it) and tasks that do not exist, attempts 1 and 2; 32 in all, so
/// that the ring holds them.
const FORGE: TaskKind = TaskKind(2012);
/// Writes its heartbeat as another incarnation would, naming another task as its own.
const LIE: TaskKind = TaskKind(2013);
/// Clears the task its heartbeat names, as if it ran none, and exits.
const HIDE_AND_EXIT: TaskKind = TaskKind(2014);

/// The segment's files among this process's descriptors: (descriptor, name, size).
fn segment_files() -> Vec<(i32, String, usize)> {
    (0..64)
        .filter_map(|fd| {
            let link = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).ok()?;
            let mut buf = [0u8; 256];
            // SAFETY: `link` is a C string, `buf` a buffer of the length given.
            let n = unsafe {
                libc::readlinkat(
                    libc::AT_FDCWD,
                    link.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            let name = String::from_utf8_lossy(buf.get(..usize::try_from(n).ok()?)?).into_owned();
            if !name.contains("memfd:neuralflow-swarm") {
                return None;
            }
            // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `st` is a valid out-pointer for fstat.
            let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
            ok.then_some((fd, name, st.st_size as usize))
        })
        .collect()
}

/// Maps `fd` (`len` bytes) shared, read-write; `None` when the kernel refuses.
fn map_writable(fd: i32, len: usize) -> Option<*mut u8> {
    // SAFETY: a fresh mapping chosen by the kernel; nothing of ours is overwritten.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// This agent's slot file, mapped read-write.
fn own_slot_file() -> Option<*mut u8> {
    segment_files()
        .into_iter()
        .find(|(_, name, _)| name.contains("neuralflow-swarm-slot"))
        .and_then(|(fd, _, len)| map_writable(fd, len))
}

fn io_err(e: std::io::Error) -> TaskError {
    TaskError::new("io", e.to_string())
}

fn registry() -> Registry {
    let mut r = Registry::with_synthetic();
    r.register(NET, "net", |ctx: &TaskContext<'_>| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ctx.arg() as u16));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100))
            .map(|_| b"connected".to_vec())
            .map_err(io_err)
    })
    .unwrap();
    r.register(FORK_BOMB, "fork-bomb", |_| -> Result<Vec<u8>, String> {
        loop {
            // SAFETY: the child, if any, only loops forking and never returns here.
            unsafe { libc::fork() };
        }
    })
    .unwrap();
    r.register(EXEC, "exec", |_| {
        let e =
            std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("/bin/sh"));
        Err::<Vec<u8>, _>(io_err(e))
    })
    .unwrap();
    r.register(PTRACE, "ptrace", |ctx: &TaskContext<'_>| {
        // SAFETY: PTRACE_ATTACH takes a pid and no memory of ours.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_ATTACH,
                ctx.arg() as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        Ok::<_, String>(r.to_string().into_bytes())
    })
    .unwrap();
    r.register(KILL, "kill", |ctx: &TaskContext<'_>| {
        // SAFETY: kill takes integers only.
        let r = unsafe { libc::kill(ctx.arg() as libc::pid_t, libc::SIGKILL) };
        Ok::<_, String>(r.to_string().into_bytes())
    })
    .unwrap();
    r.register(DUP, "dup", |_| {
        for _ in 0..10_000 {
            // SAFETY: dup takes a descriptor number; the copies are leaked on purpose.
            unsafe { libc::dup(2) };
        }
        Ok::<_, String>(Vec::new())
    })
    .unwrap();
    r.register(READ, "read", |ctx: &TaskContext<'_>| {
        let path = String::from_utf8_lossy(ctx.input()).into_owned();
        std::fs::read(path).map_err(io_err)
    })
    .unwrap();
    r.register(WRITE, "write", |ctx: &TaskContext<'_>| {
        let path = String::from_utf8_lossy(ctx.input()).into_owned();
        std::fs::write(path, b"pwned")
            .map(|_| Vec::new())
            .map_err(io_err)
    })
    .unwrap();
    r.register(CLOSE_FDS, "close-fds", |ctx: &TaskContext<'_>| {
        for fd in 3..1024 {
            // SAFETY: closing descriptors touches no memory; the agent's own state in
            // shared memory stays mapped.
            unsafe { libc::close(fd) };
        }
        ctx.sleep(Duration::from_millis(200));
        Ok::<_, String>(Vec::new())
    })
    .unwrap();
    r.register(HOG, "hog", |ctx: &TaskContext<'_>| {
        let mut v: Vec<Vec<u8>> = Vec::new();
        for _ in 0..ctx.arg() {
            v.push(vec![0x5A; 1 << 20]);
        }
        Ok::<_, String>(v.len().to_string().into_bytes())
    })
    .unwrap();
    r.register(SCRIBBLE, "scribble", |ctx: &TaskContext<'_>| {
        Ok::<_, String>(scribble(ctx.arg()))
    })
    .unwrap();
    fn scribble(ms: u64) -> Vec<u8> {
        let (mut wrote, mut refused) = (0, 0);
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
        // The slot file last: ruining it gets the scribbler killed soon after.
        let mut files = segment_files();
        files.sort_by_key(|(_, name, _)| name.contains("neuralflow-swarm-slot"));
        for (fd, _, len) in files {
            let Some(p) = map_writable(fd, len) else {
                refused += 1;
                // Nor may it be written with write(2).
                // SAFETY: a one-byte buffer on the stack.
                assert!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) } < 0);
                continue;
            };
            wrote += 1;
            let end = std::time::Instant::now() + Duration::from_millis(ms);
            while std::time::Instant::now() < end {
                for _ in 0..1024 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = (x as usize % (len / 8)) * 8;
                    // SAFETY: an aligned u64 inside the `len`-byte shared mapping.
                    unsafe { p.add(at).cast::<u64>().write_volatile(x) };
                }
            }
        }
        format!("wrote {wrote} refused {refused}").into_bytes()
    }
    r.register(FORGE, "forge", |ctx: &TaskContext<'_>| {
        use neuralflow_swarm::descriptor::Descriptor;
        use neuralflow_swarm::segment::{SLOT_FROM_AGENT_PRODUCER, SLOT_FROM_AGENT_SLOTS};
        let p = own_slot_file().ok_or("no slot file")?;
        // SAFETY: the from-agent producer side and slots of this agent's own slot file,
        // inside the mapping (the ring's capacity is at least 64 in this test).
        unsafe {
            let tail = p.add(SLOT_FROM_AGENT_PRODUCER as usize).cast::<u64>();
            let slots = p.add(SLOT_FROM_AGENT_SLOTS as usize).cast::<Descriptor>();
            let mut t = tail.read_volatile();
            let ids = std::iter::once(ctx.arg()).chain((1u64 << 40)..(1u64 << 40) + 15);
            for id in ids {
                for attempt in 1..=2 {
                    let d = Descriptor::new(id, attempt, neuralflow_swarm::task::status::OK);
                    slots.add((t % 64) as usize).write_volatile(d);
                    t += 1;
                    tail.write_volatile(t);
                }
            }
        }
        // Long enough for the supervisor to read them.
        ctx.sleep(Duration::from_millis(100));
        Ok::<_, String>(b"forged".to_vec())
    })
    .unwrap();
    r.register(LIE, "lie", |ctx: &TaskContext<'_>| {
        use neuralflow_swarm::heartbeat::HeartbeatWord;
        let p = own_slot_file().ok_or("no slot file")?;
        // SAFETY: the heartbeat line at the start of this agent's own slot file.
        let hb = unsafe { &*p.cast::<HeartbeatWord>() };
        hb.set_current(Some((ctx.arg(), 1)));
        hb.begin(u32::MAX - 1, 1);
        hb.beat();
        ctx.sleep(Duration::from_secs(5));
        Ok::<_, String>(Vec::new())
    })
    .unwrap();
    r.register(
        HIDE_AND_EXIT,
        "hide-and-exit",
        |_| -> Result<Vec<u8>, String> {
            use neuralflow_swarm::heartbeat::HeartbeatWord;
            let p = own_slot_file().ok_or("no slot file")?;
            // SAFETY: the heartbeat line at the start of this agent's own slot file.
            let hb = unsafe { &*p.cast::<HeartbeatWord>() };
            hb.set_current(None);
            std::process::exit(0)
        },
    )
    .unwrap();
    r.register(EXIT_AT, "exit-at", |ctx: &TaskContext<'_>| {
        let exit_soon = |after: Duration| {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                std::process::exit(0)
            })
        };
        match ctx.arg() {
            0 => std::process::exit(0),
            1 => {
                use neuralflow_swarm::descriptor::Descriptor;
                use neuralflow_swarm::heartbeat::HeartbeatWord;
                use neuralflow_swarm::segment::{SLOT_FROM_AGENT_PRODUCER, SLOT_FROM_AGENT_SLOTS};
                let p = own_slot_file().ok_or("no slot file")?;
                // SAFETY: the heartbeat line, the from-agent producer side and slots of this
                // agent's own slot file, inside the mapping (the ring's capacity is 64).
                unsafe {
                    let hb = &*p.cast::<HeartbeatWord>();
                    let (id, attempt) = hb.current().ok_or("no current task")?;
                    let tail = p.add(SLOT_FROM_AGENT_PRODUCER as usize).cast::<u64>();
                    let slots = p.add(SLOT_FROM_AGENT_SLOTS as usize).cast::<Descriptor>();
                    let t = tail.read_volatile();
                    let d = Descriptor::new(id, attempt, neuralflow_swarm::task::status::OK);
                    slots.add((t % 64) as usize).write_volatile(d);
                    tail.write_volatile(t + 1);
                }
                std::process::exit(0)
            }
            2 => {
                exit_soon(Duration::from_millis(2));
                Ok::<_, String>(b"done".to_vec())
            }
            _ => {
                exit_soon(Duration::ZERO);
                Ok(vec![0xA5; 4 << 20])
            }
        }
    })
    .unwrap();
    r.register(PID, "pid", |_| {
        Ok::<_, String>(std::process::id().to_string().into_bytes())
    })
    .unwrap();
    r
}

/// Runs `hostile` beside 40 echo tasks: the echo tasks all complete with their own bytes,
/// whatever the hostile one did. Returns the hostile task's outcome.
fn beside_honest_work(sup: &Supervisor, hostile: TaskSpec) -> Outcome {
    let honest: Vec<_> = (0..40)
        .map(|i| {
            let spec = TaskSpec::echo(100 + i, i as u64);
            let want: Vec<u8> = spec.bytes().iter().map(|b| b ^ ECHO_XOR).collect();
            (sup.submit(spec).unwrap(), want)
        })
        .collect();
    let outcome = wait(sup, hostile);
    for (h, want) in honest {
        match h.wait(Some(WATCHDOG)).expect("an outcome") {
            Outcome::Completed { output, .. } => assert_eq!(output, want),
            other => panic!("an honest task was hurt: {other:?}"),
        }
    }
    outcome
}

/// Each forbidden system call kills the agent that made it (`sandbox`), its task is
/// retried and then quarantined, and only the agents that ran it die.
fn forbidden_system_calls_kill_only_the_offender() {
    let sup = builder(2).build().unwrap();
    let me = std::process::id() as u64;
    let hostile = [
        ("net", TaskSpec::new(NET, 9)),
        ("fork bomb", TaskSpec::new(FORK_BOMB, 0)),
        ("exec", TaskSpec::new(EXEC, 0)),
        ("ptrace of the supervisor", TaskSpec::new(PTRACE, me)),
        ("kill of the supervisor", TaskSpec::new(KILL, me)),
        ("dup", TaskSpec::new(DUP, 0)),
    ];
    for (what, spec) in &hostile {
        let spec = TaskSpec::new(spec.kind, spec.arg);
        match beside_honest_work(&sup, spec) {
            Outcome::Failed(Failure::Quarantined(causes)) => {
                assert_eq!(causes, [DeathCause::Sandbox; 3], "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Another process of the same uid (a sibling agent would kill itself when the task
    // lands on it, which is its own business): it is out of reach, and lives.
    let mut bystander = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    for kind in [KILL, PTRACE] {
        match beside_honest_work(&sup, TaskSpec::new(kind, u64::from(bystander.id()))) {
            Outcome::Failed(Failure::Quarantined(causes)) => {
                assert_eq!(causes, [DeathCause::Sandbox; 3])
            }
            other => panic!("{kind:?} of a bystander: {other:?}"),
        }
    }
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander lives"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    let n = 3 * (hostile.len() as u64 + 2);
    assert_eq!(c.deaths.get("sandbox"), Some(&n), "{c:?}");
    let all: u64 = c.deaths.values().sum();
    assert_eq!(all, n, "no other agent died: {c:?}");
}

/// Files outside what the agents were given cannot be read or written: the handler gets
/// a permission error, nothing is disclosed or created, and the agent lives on.
fn files_outside_the_read_paths_are_out_of_reach() {
    let dir = std::env::temp_dir().join(format!("swarm-hostile-{}", std::process::id()));
    let given = dir.join("given");
    std::fs::create_dir_all(&given).unwrap();
    std::fs::write(given.join("doc.txt"), b"the document").unwrap();
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, b"the secret").unwrap();
    let sup = builder(1)
        .sandbox(sandbox(vec![given.clone()]))
        .build()
        .unwrap();
    let read = |p: &std::path::Path| {
        wait(
            &sup,
            TaskSpec::new(READ, 0).with_bytes(p.display().to_string().into_bytes()),
        )
    };
    match read(&given.join("doc.txt")) {
        Outcome::Completed { output, .. } => assert_eq!(output, b"the document"),
        other => panic!("{other:?}"),
    }
    for p in [secret.as_path(), std::path::Path::new("/etc/passwd")] {
        match read(p) {
            Outcome::Failed(Failure::Task(e)) => {
                assert!(e.message.contains("ermission denied"), "{p:?}: {e:?}")
            }
            other => panic!("{p:?} was read: {other:?}"),
        }
    }
    let planted = given.join("planted.txt");
    for p in [planted.as_path(), secret.as_path()] {
        let out = wait(
            &sup,
            TaskSpec::new(WRITE, 0).with_bytes(p.display().to_string().into_bytes()),
        );
        assert!(
            matches!(out, Outcome::Failed(Failure::Task(_))),
            "{p:?}: {out:?}"
        );
    }
    assert!(!planted.exists());
    assert_eq!(std::fs::read(&secret).unwrap(), b"the secret");
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.agent_restarts, 0, "{c:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Seen from outside, in `/proc`: every agent runs with no new privileges, two seccomp
/// filters, no capability (not even in its bounding set), no core files, and few
/// descriptors; and `status()` reports each measure on.
fn agents_run_with_every_measure_in_force() {
    let sup = builder(2).build().unwrap();
    let report = sup.status().isolation.sandbox;
    for m in Measure::ALL {
        if cgroups_required() {
            assert_eq!(report.state(m), &MeasureState::On, "{m:?}: {report:?}");
        }
    }
    if report.state(Measure::Seccomp) != &MeasureState::On {
        eprintln!("seccomp unavailable here: {report:?}");
        return;
    }
    for _ in 0..2 {
        let pid = match wait(&sup, TaskSpec::new(PID, 0)) {
            Outcome::Completed { output, .. } => String::from_utf8(output).unwrap(),
            other => panic!("{other:?}"),
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(field("NoNewPrivs"), "1");
        assert_eq!(field("Seccomp"), "2");
        assert_eq!(field("Seccomp_filters"), "2");
        for caps in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
            assert_eq!(field(caps), "0000000000000000", "{caps}");
        }
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let limit = |name: &str| {
            limits
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        assert!(limit("Max core file size").contains("size 0 0"), "{limits}");
        assert!(limit("Max open files").contains("files 64 64"), "{limits}");
    }
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// An agent that closes its descriptors (the segment's, the supervisor's liveness pipe)
/// loses only itself: it exits, its task is blamed, the others go on.
fn closing_its_descriptors_costs_only_the_offender() {
    let sup = builder(2).build().unwrap();
    match beside_honest_work(&sup, TaskSpec::new(CLOSE_FDS, 0)) {
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert!(causes.iter().all(|c| c.blames_task()), "{causes:?}")
        }
        // Closing is allowed: an agent that kept working would be fine too.
        Outcome::Completed { .. } => {}
        other => panic!("{other:?}"),
    }
    for _ in 0..10 {
        assert!(wait(&sup, "noop".parse().unwrap()).is_completed());
    }
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A memory hog is stopped by its cgroup's limit (`oom`) and quarantined; the others are
/// not touched.
fn a_memory_hog_is_killed_by_its_own_limit() {
    let sup = builder(2)
        .limits(Limits {
            memory_bytes: Some(64 << 20),
            ..Limits::default()
        })
        .build()
        .unwrap();
    if sup.status().isolation.cgroups.is_none() {
        assert!(!cgroups_required(), "cgroups required but unavailable");
        eprintln!("a_memory_hog_is_killed_by_its_own_limit: no cgroups here, skipped");
        return;
    }
    match beside_honest_work(&sup, TaskSpec::new(HOG, 1024)) {
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert_eq!(causes, [DeathCause::Oom; 3])
        }
        other => panic!("{other:?}"),
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.deaths.get("oom"), Some(&3), "{c:?}");
    let all: u64 = c.deaths.values().sum();
    assert_eq!(all, 3, "{c:?}");
}

/// An agent that writes random bytes over every segment file it can map writable: the
/// supervisor's file (header, control words, the supervisor's ring sides) is refused it,
/// other agents' files are not there to map, and its own slot file (heartbeat, rings) it
/// may ruin, which costs it its life and its task a strike. Meanwhile honest work
/// completes, new agents start (the header is intact), and every task of the rogue
/// scenario (spin tasks beside scribblers) ends exactly once.
fn scribbling_over_the_segment_costs_only_the_scribbler() {
    let sup = builder(2).build().unwrap();
    for _ in 0..2 {
        match beside_honest_work(&sup, TaskSpec::new(SCRIBBLE, 50)) {
            Outcome::Failed(Failure::Quarantined(causes)) => {
                assert!(causes.iter().all(|c| c.blames_task()), "{causes:?}")
            }
            Outcome::Completed { output, .. } => {
                let said = String::from_utf8_lossy(&output).into_owned();
                assert!(said.ends_with("refused 1"), "{said}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The rogue scenario: 20,000 spin tasks with scribblers among them.
    let spins: Vec<_> = (0..20_000)
        .map(|_| sup.submit("spin:100us".parse().unwrap()).unwrap())
        .collect();
    let scribblers: Vec<_> = (0..3)
        .map(|_| sup.submit(TaskSpec::new(SCRIBBLE, 200)).unwrap())
        .collect();
    for h in spins {
        let o = h.wait(Some(WATCHDOG)).expect("every spin task ends");
        assert!(o.is_completed(), "{o:?}");
    }
    for h in scribblers {
        h.wait(Some(WATCHDOG)).expect("every scribbler ends");
    }
    for _ in 0..10 {
        assert!(wait(&sup, "noop".parse().unwrap()).is_completed());
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    // Only the five scribblers may have failed; every other task completed, once.
    assert!(c.failed <= 5, "{c:?}");
    assert_eq!(c.completed + c.failed, 20_000 + 2 * 41 + 3 + 10, "{c:?}");
}

/// Completions forged for tasks that are not the forger's (one already done, others that
/// do not exist) are discarded and counted; every honest task ends once, with its own
/// bytes. (An agent can complete only the tasks given to it: for those, a forged
/// completion is just its answer, right or wrong, as any agent's is.)
fn forged_completions_are_discarded() {
    let sup = builder(2).ring_capacity(64).build().unwrap();
    let done = sup.submit("noop".parse().unwrap()).unwrap();
    let done_id = done.id().get();
    assert!(done.wait(Some(WATCHDOG)).unwrap().is_completed());
    match beside_honest_work(&sup, TaskSpec::new(FORGE, done_id)) {
        Outcome::Completed { .. } => {}
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert!(causes.iter().all(|c| c.blames_task()), "{causes:?}")
        }
        other => panic!("{other:?}"),
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert!(c.stale_completions >= 32, "{c:?}");
}

/// An agent that claims another incarnation in its heartbeat, and another task as its
/// current one, is killed for breaking the protocol; the strike falls on its own task,
/// never on the task it named.
fn a_lying_heartbeat_costs_only_the_liar() {
    let sup = builder(2).build().unwrap();
    match beside_honest_work(&sup, TaskSpec::new(LIE, 1)) {
        Outcome::Failed(Failure::Quarantined(causes)) => {
            assert_eq!(causes, [DeathCause::Protocol; 3])
        }
        other => panic!("{other:?}"),
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    // An honest task whose completion the liar had not yet published when it died may
    // take a strike too (it is retried, and completed above); nothing else dies.
    assert!(c.deaths.get("protocol").is_some_and(|&n| n >= 3), "{c:?}");
    assert_eq!(
        c.deaths.values().sum::<u64>(),
        c.deaths["protocol"],
        "{c:?}"
    );
}

/// An agent that hides the task it runs and exits: no death is put on the task, so it
/// cannot be quarantined; it is given up after `max_attempts` deaths instead of being
/// retried for ever, and the honest work beside it completes.
fn a_task_whose_agents_hide_it_and_die_is_given_up() {
    let sup = builder(2).max_attempts(5).build().unwrap();
    match beside_honest_work(&sup, TaskSpec::new(HIDE_AND_EXIT, 0)) {
        Outcome::Failed(Failure::Abandoned { deaths, last }) => {
            assert_eq!((deaths, last), (5, DeathCause::Exit(0)))
        }
        other => panic!("{other:?}"),
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert_eq!(c.deaths.get("exit"), Some(&5), "{c:?}");
}

/// Page buffers by owner: a scribbler writes random bytes over its own pool (and rings,
/// and the doorbell) while honest tasks pass payloads, outputs, and kept outputs handed on
/// to later tasks, through page buffers. It cannot reach any of them: every honest task
/// completes with exactly its own bytes, and once idle every buffer of every pool is free
/// (the scribbler's own words swept or reclaimed with it).
fn scribbling_cannot_change_another_tasks_data() {
    let sup = builder(2).build().unwrap();
    let scribblers: Vec<_> = (0..2)
        .map(|_| sup.submit(TaskSpec::new(SCRIBBLE, 100)).unwrap())
        .collect();
    // Echo tasks of one to four buffers all the while the scribblers run (and their
    // retries), every other one kept and handed on to a second echo (XOR twice restores
    // its payload).
    let mut echoes = Vec::new();
    let until = std::time::Instant::now() + Duration::from_millis(600);
    let mut i = 0u64;
    while std::time::Instant::now() < until {
        let spec = TaskSpec::echo(3000 + (i as usize * 7919) % 250_000, i);
        let payload = spec.bytes().to_vec();
        let keep = i % 2 == 0;
        let spec = if keep {
            spec.with_output(Output::Hold)
        } else {
            spec
        };
        echoes.push((sup.submit(spec).unwrap(), payload, keep));
        i += 1;
        std::thread::sleep(Duration::from_micros(500));
    }
    for (h, payload, keep) in echoes {
        match h.wait(Some(WATCHDOG)).expect("every task ends") {
            Outcome::Completed {
                held: Some(held), ..
            } if keep => {
                let again =
                    TaskSpec::new(neuralflow_swarm::task::kinds::ECHO, 0).with_held(vec![held]);
                match wait(&sup, again) {
                    Outcome::Completed { output, .. } => {
                        assert!(output == payload, "a kept output was changed")
                    }
                    other => panic!("{other:?}"),
                }
            }
            Outcome::Completed { output, .. } if !keep => {
                let back: Vec<u8> = output.iter().map(|b| b ^ ECHO_XOR).collect();
                assert!(back == payload, "an output was changed");
            }
            other => panic!("an honest task failed: {other:?}"),
        }
    }
    for h in scribblers {
        h.wait(Some(WATCHDOG)).expect("every scribbler ends");
    }
    for _ in 0..10 {
        assert!(wait(&sup, "noop".parse().unwrap()).is_completed());
    }
    every_buffer_comes_back(&sup);
    sup.shutdown(Shutdown::Drain).unwrap();
}

fn every_buffer_comes_back(sup: &Supervisor) {
    swarm::every_buffer_comes_back(sup, WATCHDOG);
}

/// An agent that exits at each step of the protocol: in its task (a strike, then
/// quarantine), after publishing its completion by hand (the task completes, with what it
/// published), between tasks (its task completed; the next agent serves), while writing its
/// output into its pool (retried, then quarantined, or completed if the output got out
/// first). Each time only the offender dies, the honest work beside it completes with its
/// own bytes, and every buffer comes back.
fn exiting_at_every_step_of_the_protocol_loses_nothing() {
    let sup = builder(2).ring_capacity(64).build().unwrap();
    for step in 0..4u64 {
        let o = beside_honest_work(&sup, TaskSpec::new(EXIT_AT, step));
        match (step, &o) {
            (0, Outcome::Failed(Failure::Quarantined(causes))) => {
                assert_eq!(causes, &[DeathCause::Exit(0); 3])
            }
            (1, Outcome::Completed { output, .. }) => assert!(output.is_empty()),
            (2, Outcome::Completed { output, .. }) => assert_eq!(output, b"done"),
            (3, Outcome::Completed { output, .. }) => assert!(output == &vec![0xA5; 4 << 20]),
            (3, Outcome::Failed(Failure::Quarantined(causes))) => {
                assert!(
                    causes.iter().all(|c| *c == DeathCause::Exit(0)),
                    "{causes:?}"
                )
            }
            _ => panic!("step {step}: {o:?}"),
        }
        every_buffer_comes_back(&sup);
    }
    let c = sup.shutdown(Shutdown::Drain).unwrap();
    assert!(c.deaths.keys().all(|k| *k == "exit"), "{c:?}");
}

const TESTS: &[harness::Test] = tests![
    scribbling_cannot_change_another_tasks_data,
    exiting_at_every_step_of_the_protocol_loses_nothing,
    a_task_whose_agents_hide_it_and_die_is_given_up,
    scribbling_over_the_segment_costs_only_the_scribbler,
    forged_completions_are_discarded,
    a_lying_heartbeat_costs_only_the_liar,
    forbidden_system_calls_kill_only_the_offender,
    files_outside_the_read_paths_are_out_of_reach,
    agents_run_with_every_measure_in_force,
    closing_its_descriptors_costs_only_the_offender,
    a_memory_hog_is_killed_by_its_own_limit,
];

fn main() -> std::process::ExitCode {
    // First thing: started by a supervisor, this process is an agent and never returns.
    serve_if_agent(registry);
    harness::run(TESTS)
}
