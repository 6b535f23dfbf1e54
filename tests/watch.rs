//! Watching a running `swarm run` from outside: `swarm top` drawn in a real terminal
//! (tmux, read back with capture-pane), `swarm status`, and `--metrics` read by
//! `promtool` with counters that match the run's output.
//!
//! Needs the corpus beside the repository, `tmux` and `promtool`; under `CI=true` a
//! missing one fails the test instead of skipping it.

#[path = "common/cli.rs"]
mod cli;

use cli::{corpus, swarm};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `swarm run` of the real corpus `rounds` times over (long enough to watch), with
/// `args`; its output goes to `out`.
fn long_run(c: &Path, dir: &Path, rounds: usize, args: &[&str], out: &Path) -> Killed {
    let mut list = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(c.join("real"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for _ in 0..rounds {
        for f in &files {
            list.push_str(&format!("{}\n", f.display()));
        }
    }
    let list_file = dir.join("list.txt");
    std::fs::write(&list_file, list).unwrap();
    Killed(
        swarm()
            .args(["run", "--files-from", list_file.to_str().unwrap()])
            .args(["--output", out.to_str().unwrap()])
            .args(args)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Waits until `swarm status --json --pid` answers for `pid`, and returns its view.
fn status_of(pid: u32) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = swarm()
            .args(["status", "--json", "--pid", &pid.to_string()])
            .output()
            .unwrap();
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "swarm status never answered: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn top_draws_every_agent_of_a_running_swarm_in_a_terminal() {
    let Some(c) = corpus() else { return };
    if !cli::have("tmux") {
        return;
    }
    let dir = cli::tmp("watch", "top");
    let run = long_run(&c, &dir, 400, &["--agents", "3"], &dir.join("out.jsonl"));
    let pid = run.0.id();
    let view = status_of(pid);
    assert_eq!(view["command"], "run");
    let session = format!("swarm-top-test-{}", std::process::id());
    let socket = format!("swarm-top-test-{}", std::process::id());
    let top = format!(
        "{} top --pid {pid} --interval 200ms",
        env!("CARGO_BIN_EXE_swarm")
    );
    tmux(&[
        "-L",
        &socket,
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "140",
        "-y",
        "40",
        &top,
    ]);
    // Every agent's pid on screen (they are the ones the status socket names, and they
    // run: the run is long).
    let deadline = Instant::now() + Duration::from_secs(30);
    let screen = loop {
        let screen = tmux(&["-L", &socket, "capture-pane", "-p", "-t", &session]);
        let pids: Vec<String> = status_of(pid)["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["pid"].to_string())
            .collect();
        let shown = screen.contains(&format!("pid {pid}"))
            && screen.contains("agents (3)")
            && pids.iter().all(|p| screen.contains(&format!(" {p} ")));
        if shown {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "top never showed the agents:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for part in ["pages/s", "queue depth", "slab", "heartbeat", "deaths"] {
        assert!(screen.contains(part), "{part} not on screen:\n{screen}");
    }
    // q quits, and the terminal is given back.
    tmux(&["-L", &socket, "send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&["-L", &socket, "list-sessions"]).contains(&session) {
        assert!(Instant::now() < deadline, "top did not quit on q");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .status();
    drop(run);
}

#[test]
fn status_finds_the_only_swarm_and_refuses_a_wrong_one() {
    let out = swarm()
        .args(["status", "--pid", "999999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no swarm at"));
    let out = swarm()
        .args(["top", "--socket", "/nonexistent/x.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_metrics_are_prometheus_text_with_the_runs_counts() {
    let Some(c) = corpus() else { return };
    if !cli::have("promtool") {
        return;
    }
    let dir = cli::tmp("watch", "metrics");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = dir.join("out.jsonl");
    let mut run = long_run(
        &c,
        &dir,
        2,
        &["--agents", "2", "--metrics", &port.to_string()],
        &out,
    );
    // Scrape while it runs, each scrape between two counts of the lines written: the
    // documents counted lie between them (a document is counted once its line is out).
    let url = format!("http://127.0.0.1:{port}/metrics");
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let mut scrapes = 0;
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let before = lines();
        if let Ok(resp) = ureq::get(&url).call() {
            text = resp.into_string().unwrap();
            let after = lines();
            let docs: f64 = ["ok", "failed"]
                .iter()
                .map(|s| {
                    let name = format!("swarm_documents_total{{status=\"{s}\"}} ");
                    text.lines()
                        .find_map(|l| l.strip_prefix(&name)?.parse::<f64>().ok())
                        .unwrap()
                })
                .sum();
            let docs = docs as usize;
            assert!(
                before <= docs && docs <= after,
                "{before} <= {docs} <= {after}"
            );
            scrapes += 1;
        }
        if let Some(st) = run.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(matches!(status.code(), Some(0 | 3)), "{status:?}");
    assert!(scrapes > 0, "no scrape while the run lasted");
    cli::promtool_check(&text);
    for family in [
        "# TYPE swarm_tasks_total counter",
        "# TYPE swarm_task_run_seconds histogram",
        "# TYPE swarm_agents gauge",
        "# TYPE swarm_supervisor_cpu_seconds_total counter",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    drop(run);
}
