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
