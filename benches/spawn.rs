//! What starting an agent costs in a supervisor with a large heap: `fork` (what
//! `std::process::Command` does whenever a `pre_exec` hook is set, as joining a cgroup
//! before exec needs) against the supervisor's `CLONE_VM | CLONE_VFORK` launch, in the
//! same run. `cargo bench --bench spawn` (prints one line per round).

use neuralflow_swarm::launch::Launch;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

fn mean(n: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

fn main() {
    let mb: usize = std::env::var("SPAWN_BENCH_HEAP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    // A heap of `mb` MiB, every page touched, as a long-running embedder's would be.
    let mut heap = vec![1u8; mb << 20];
    for i in (0..heap.len()).step_by(4096) {
        heap[i] = i as u8;
    }
    println!("heap {mb} MiB touched; mean of 10 starts of /bin/true each");
    for round in 0..3 {
        let fork = mean(10, || {
            let mut c = std::process::Command::new("/bin/true");
            // SAFETY: an empty hook; it only forces `fork`.
            unsafe { c.pre_exec(|| Ok(())) };
            c.spawn().unwrap().wait().unwrap();
        });
        let launch = mean(10, || {
            let l = Launch::new(OsStr::new("/bin/true"), &[]).unwrap();
            l.spawn().unwrap().wait().unwrap();
        });
        println!(
            "round {round}: fork {fork:?}, launch {launch:?} ({:.1}x)",
            fork.as_secs_f64() / launch.as_secs_f64()
        );
    }
    std::hint::black_box(&heap);
}
