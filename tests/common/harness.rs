//! The runner of the one-binary test programs (`harness = false`): their `main` must call
//! `serve_if_agent` first, as an embedder's does, and then runs the tests it names.
//! Arguments filter the tests by name, as libtest's do; `--list` lists them.

use std::time::Instant;

/// A test: its name and its body.
pub type Test = (&'static str, fn());

/// The tests, by name.
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), $name as fn())),*]
    };
}

/// Runs the tests the arguments choose; fails when any fails.
pub fn run(tests: &[Test]) -> std::process::ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return std::process::ExitCode::SUCCESS;
    }
    let chosen: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let ran = chosen.len();
    println!("\nrunning {ran} tests");
    let mut failed = Vec::new();
    for (name, test) in chosen {
        let t = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        println!(
            "test {name} ... {} ({:.2?})",
            if ok { "ok" } else { "FAILED" },
            t.elapsed()
        );
        if !ok {
            failed.push(*name);
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok. {ran} passed");
        std::process::ExitCode::SUCCESS
    } else {
        println!("\ntest result: FAILED. failures: {failed:?}");
        std::process::ExitCode::FAILURE
    }
}
