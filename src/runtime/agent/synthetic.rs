//! The synthetic task kinds that tests and benchmarks use ([`crate::runtime::task::kinds`]).

use super::Registry;
use crate::runtime::task::{kinds, ECHO_XOR};
use std::time::{Duration, Instant};

impl Registry {
    /// The synthetic kinds used by tests and benchmarks: `noop`, `spin`, `busy`, `sleep`,
    /// `echo`, `alloc`, `concat`, `crash`, `hang`, `panic`.
    pub fn with_synthetic() -> Self {
        let mut r = Self::new();
        r.add_synthetic();
        r
    }

    fn add_synthetic(&mut self) {
        let spin = |ctx: &super::TaskContext<'_>, beat: bool| {
            let end = Instant::now() + Duration::from_nanos(ctx.arg());
            let mut i = 0u32;
            while Instant::now() < end {
                std::hint::spin_loop();
                i = i.wrapping_add(1);
                if beat && i % 1024 == 0 {
                    ctx.beat();
                }
            }
            Vec::new()
        };
        let all: [(
            crate::runtime::task::TaskKind,
            &'static str,
            super::registry::Handler,
        ); 10] = [
            (kinds::NOOP, "noop", Box::new(|_| Ok(Vec::new()))),
            (
                kinds::SPIN,
                "spin",
                Box::new(move |ctx| Ok(spin(ctx, true))),
            ),
            // Ordinary CPU-bound code: it never beats, and must not be taken for hung.
            (
                kinds::BUSY,
                "busy",
                Box::new(move |ctx| Ok(spin(ctx, false))),
            ),
            (
                kinds::SLEEP,
                "sleep",
                Box::new(|ctx| {
                    ctx.sleep(Duration::from_nanos(ctx.arg()));
                    Ok(Vec::new())
                }),
            ),
            (
                kinds::ECHO,
                "echo",
                Box::new(|ctx| Ok(ctx.input().iter().map(|b| b ^ ECHO_XOR).collect())),
            ),
            (
                kinds::ALLOC,
                "alloc",
                Box::new(|ctx| alloc(ctx.arg() as usize).map_err(Into::into)),
            ),
            (
                kinds::CONCAT,
                "concat",
                Box::new(|ctx| Ok(ctx.inputs().concat())),
            ),
            (kinds::CRASH, "crash", Box::new(|_| std::process::abort())),
            (
                kinds::HANG,
                "hang",
                Box::new(|_| {
                    // The whole process stops, its liveness thread with it: what a frozen
                    // agent looks like. Only the supervisor's SIGKILL ends it.
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }),
            ),
            (
                kinds::PANIC,
                "panic",
                Box::new(|_| panic!("synthetic panic")),
            ),
        ];
        for (kind, name, handler) in all {
            self.insert(kind, name, handler)
                .expect("synthetic kinds are distinct and registered first");
        }
    }
}

/// Allocates and touches `size` bytes, then frees them.
fn alloc(size: usize) -> Result<Vec<u8>, String> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(size)
        .map_err(|e| format!("cannot reserve {size} bytes: {e}"))?;
    // Touch every page so the memory is really charged to the agent's cgroup.
    let page = 4096;
    let mut touched = 0;
    while touched < size {
        let n = page.min(size - touched);
        v.extend(std::iter::repeat_n(1u8, n));
        touched += n;
    }
    std::hint::black_box(&v);
    Ok(Vec::new())
}
