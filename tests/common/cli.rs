//! Helpers of the tests that drive the `swarm` binary: the corpus beside the repository,
//! scratch folders, the binary itself, and the tools some tests need.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether this is CI (`CI=true`), where what a test needs must be there.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The shared corpus (`../shared/corpus`), canonical; `None` (the test skips, saying so)
/// when it is missing, except under CI, where that fails the test.
pub fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if dir.join("manifest.tsv").is_file() {
        return Some(std::fs::canonicalize(dir).expect("the corpus's folder"));
    }
    assert!(
        !ci(),
        "CI=true and the corpus is missing at {}",
        dir.display()
    );
    eprintln!("SKIPPED: no corpus at {}", dir.display());
    None
}

/// A fresh scratch folder `nfswarm-<group>-<pid>-<name>` under the temporary directory,
/// canonical.
pub fn tmp(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nfswarm-{group}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a scratch folder");
    std::fs::canonicalize(d).expect("the scratch folder")
}

/// The `swarm` binary of this build, with its agents'.
pub fn swarm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_swarm"));
    c.env("SWARM_AGENT_BIN", env!("CARGO_BIN_EXE_agent-bin"));
    c
}

/// Whether `tool` runs here (`tool --version`, or `-V` for tmux); under CI its absence
/// fails the test.
pub fn have(tool: &str) -> bool {
    let here = Command::new(tool)
        .arg(if tool == "tmux" { "-V" } else { "--version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(here || !ci(), "CI=true and {tool} is missing");
    if !here {
        eprintln!("SKIPPED: no {tool}");
    }
    here
}

/// `text` through `promtool check metrics` (Prometheus's own parser and linter), which
/// must find nothing wrong.
pub fn promtool_check(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(p.stdin.as_mut().expect("its stdin"), text.as_bytes())
        .expect("writing to promtool");
    let out = p.wait_with_output().expect("promtool's answer");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
