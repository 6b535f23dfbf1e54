//! Many hosts on NATS JetStream, through real processes: a `nats-server` with JetStream
//! on loopback, `swarm worker`s, and `swarm submit`. The lines that come back must be
//! the lines `swarm run` writes, each document exactly once, when a worker is killed
//! mid-run and when the submitter is killed and resumed.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/jobs.rs"]
mod jobs;
#[path = "common/pdfgen.rs"]
mod pdfgen;

use cli::{ci, corpus, swarm, tmp};
use jobs::{
    assert_same, count_lines, drain, first_pdf, lines, reference, summary_field, wait,
    wait_for_lines,
};
use neuralflow_swarm::cluster::server::LocalServer;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A JetStream server of the test's own on loopback (see [`LocalServer`]); `None` (the
/// test skipping) without `nats-server`, except under CI, where that fails.
fn server(dir: &Path) -> Option<LocalServer> {
    match LocalServer::start(&dir.join("nats")) {
        Ok(s) => Some(s),
        Err(e) => {
            assert!(!ci(), "CI=true: {e}");
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// A test's corpus, scratch folder `name` and server; `None` (the test skipping) where
/// the corpus or `nats-server` is missing, except under CI.
fn setup(name: &str) -> Option<(PathBuf, PathBuf, LocalServer)> {
    let corpus = corpus()?;
    let dir = tmp("cluster", name);
    let server = server(&dir)?;
    Some((corpus, dir, server))
}

fn worker(url: &str, log: &Path) -> Child {
    worker_with(url, log, "2s")
}

fn worker_with(url: &str, log: &Path, ack_wait: &str) -> Child {
    swarm()
        .args([
            "worker",
            "--nats",
            url,
            "--agents",
            "1",
            "--ack-wait",
            ack_wait,
        ])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("a worker's log"))
        .spawn()
        .expect("swarm worker")
}

fn submit(url: &str, args: &[&str], out: &Path, err: &Path) -> Child {
    swarm()
        .args(["submit", "--nats", url, "--output"])
        .arg(out)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).expect("the submitter's log"))
        .spawn()
        .expect("swarm submit")
}

/// Two workers, one killed with SIGKILL once lines come in: the job still ends with
/// exactly `swarm run`'s lines, and a second submission of the same files stores none
/// of them again.
#[test]
fn a_job_through_two_workers_survives_one_killed() {
    let Some((corpus, dir, server)) = setup("kill") else {
        return;
    };
    let real = corpus.join("real");
    // A byte-identical copy under another name: its own line, its content stored once.
    let copy = dir.join("copy.pdf");
    let first = first_pdf(&real);
    std::fs::copy(&first, &copy).expect("a copy");
    let inputs = vec![real.clone(), copy.clone()];
    let want = reference(&inputs, &dir.join("reference.jsonl"));

    let a = worker(&server.url, &dir.join("worker-a.log"));
    let b = worker(&server.url, &dir.join("worker-b.log"));
    let out = dir.join("out.jsonl");
    let sub = submit(
        &server.url,
        &[
            real.to_str().unwrap(),
            copy.to_str().unwrap(),
            "--summary",
            dir.join("summary.json").to_str().unwrap(),
        ],
        &out,
        &dir.join("submit.log"),
    );
    wait_for_lines(&out, 60);
    let mut a = a;
    a.kill().expect("SIGKILL of a worker");
    let _ = a.wait();
    let st = wait(sub, Duration::from_secs(300));
    assert!(
        st.code().is_some_and(|c| c == 0 || c == 3),
        "swarm submit: {st}"
    );
    assert_same(&lines(&out), &want);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["documents"], want.len() as u64);
    let log = std::fs::read_to_string(dir.join("submit.log")).unwrap();
    let stored: u64 = log
        .split(" files stored")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of files stored in {log}"));
    assert!(
        stored < want.len() as u64,
        "the copy was stored again: {stored}"
    );

    // The same files again: nothing stored, the same lines.
    let again = dir.join("again.jsonl");
    let st = wait(
        submit(
            &server.url,
            &[real.to_str().unwrap(), copy.to_str().unwrap()],
            &again,
            &dir.join("again.log"),
        ),
        Duration::from_secs(300),
    );
    assert!(st.code().is_some_and(|c| c == 0 || c == 3), "{st}");
    assert_same(&lines(&again), &want);
    let log = std::fs::read_to_string(dir.join("again.log")).unwrap();
    assert!(log.contains(" 0 files stored"), "{log}");
    assert!(drain(b).success(), "the surviving worker's exit");
}

/// A worker paused (SIGSTOP) mid-job: its documents go to the other worker after the ack
/// deadline, and the job ends with `swarm run`'s lines; continued, the paused worker
/// finishes what it had, its late lines are refused (the first stored wins), and it goes
/// on working: a second job through both comes out whole, and both drain cleanly.
#[test]
fn a_paused_worker_is_overtaken_and_its_late_lines_discarded() {
    let Some((corpus, dir, server)) = setup("pause") else {
        return;
    };
    let inputs = vec![corpus.join("real")];
    let want = reference(&inputs, &dir.join("reference.jsonl"));
    let a = worker(&server.url, &dir.join("worker-a.log"));
    let b = worker(&server.url, &dir.join("worker-b.log"));
    let out = dir.join("out.jsonl");
    let sub = submit(
        &server.url,
        &[inputs[0].to_str().unwrap()],
        &out,
        &dir.join("submit.log"),
    );
    wait_for_lines(&out, 60);
    let pid = nix::unistd::Pid::from_raw(a.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let st = wait(sub, Duration::from_secs(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    assert!(
        st.code().is_some_and(|c| c == 0 || c == 3),
        "swarm submit: {st}"
    );
    assert_same(&lines(&out), &want);
    let again = dir.join("again.jsonl");
    let st = wait(
        submit(
            &server.url,
            &[inputs[0].to_str().unwrap()],
            &again,
            &dir.join("again.log"),
        ),
        Duration::from_secs(300),
    );
    assert!(st.code().is_some_and(|c| c == 0 || c == 3), "{st}");
    assert_same(&lines(&again), &want);
    assert!(drain(a).success(), "the paused worker's exit");
    assert!(drain(b).success(), "the other worker's exit");
    // The paused worker's summary: lines of documents done elsewhere meanwhile, refused.
    let refused = summary_field(&dir.join("worker-a.log"), "duplicates");
    assert!(refused > 0, "no late line of the paused worker was refused");
}

/// The submitter SIGKILLed mid-job, then `--resume JOB` into the same output: every
/// document exactly once, as `swarm run` writes it.
#[test]
fn a_killed_submitter_resumes_and_writes_what_is_missing() {
    let Some((corpus, dir, server)) = setup("resume") else {
        return;
    };
    let inputs = vec![corpus.join("real")];
    let want = reference(&inputs, &dir.join("reference.jsonl"));
    let w = worker(&server.url, &dir.join("worker.log"));
    let out = dir.join("out.jsonl");
    let mut sub = submit(
        &server.url,
        &[inputs[0].to_str().unwrap(), "--job", "resumed-1"],
        &out,
        &dir.join("submit.log"),
    );
    wait_for_lines(&out, 40);
    sub.kill().expect("SIGKILL of the submitter");
    let _ = sub.wait();
    let partial = count_lines(&out);
    assert!(partial < want.len(), "the job ended before the kill");
    let st = wait(
        submit(
            &server.url,
            &["--resume", "resumed-1"],
            &out,
            &dir.join("resume.log"),
        ),
        Duration::from_secs(300),
    );
    assert!(
        st.code().is_some_and(|c| c == 0 || c == 3),
        "swarm submit --resume: {st}"
    );
    assert_same(&lines(&out), &want);

    // A job that is not there is bad usage.
    let st = swarm()
        .args(["submit", "--nats", &server.url, "--resume", "no-such-job"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(2));
    assert!(drain(w).success(), "the worker's exit");
}

/// `swarm bench cluster --json` (starting its own server): the names users script
/// against, with figures that add up.
#[test]
fn the_cluster_bench_reports_local_and_one_and_two_workers() {
    let dir = tmp("cluster", "bench");
    // Only to learn whether nats-server is here (and fail under CI if not).
    let Some(server) = server(&dir) else {
        return;
    };
    drop(server);
    let out = swarm()
        .args([
            "bench",
            "cluster",
            "--documents",
            "6",
            "--rounds",
            "1",
            "--json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("swarm bench cluster");
    assert!(out.status.success(), "{}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let r: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(r["documents"], 6);
    assert!(r["pages"].as_u64().unwrap() > 0);
    assert_eq!(r["local"]["workers"], 0);
    let ways = r["cluster"].as_array().unwrap();
    assert_eq!(ways.len(), 2);
    for (w, n) in ways.iter().zip([1, 2]) {
        assert_eq!(w["workers"], n);
        let (s, dps) = (
            w["seconds"].as_f64().unwrap(),
            w["documents_per_second"].as_f64().unwrap(),
        );
        assert!(s > 0.0 && (dps * s - 6.0).abs() < 1e-6, "{w}");
        let local = r["local"]["seconds"].as_f64().unwrap();
        let overhead = w["overhead_ms_per_document"].as_f64().unwrap();
        assert!((overhead - (s - local) / 6.0 * 1e3).abs() < 1e-6, "{w}");
    }
}

/// A document every worker that takes it dies on (played here by a consumer that takes
/// it and never acks) is delivered `max_deliver` times, then the worker holding the
/// lease gives it an error line, and the job ends with it.
#[test]
fn a_document_out_of_deliveries_gets_an_error_line_from_the_lease_holder() {
    use async_nats::jetstream;
    use futures_util::StreamExt;
    let Some((corpus, dir, server)) = setup("poison") else {
        return;
    };
    let doc = first_pdf(&corpus.join("real"));
    let out = dir.join("out.jsonl");
    let sub = submit(
        &server.url,
        &[doc.to_str().unwrap()],
        &out,
        &dir.join("submit.log"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url.clone();
    let delivered = rt.block_on(async move {
        let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
        // The submitter makes the stream; the consumer is ours, made before any worker.
        let stream = loop {
            if let Ok(s) = js.get_stream("SWARM_JOBS").await {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let c = stream
            .get_or_create_consumer(
                "workers",
                jetstream::consumer::pull::Config {
                    durable_name: Some("workers".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(1),
                    max_deliver: 2,
                    ..Default::default()
                },
            )
            .await
            .expect("the workers' consumer");
        // Taken twice, acked never: as if each worker that took it died.
        let mut delivered = 0;
        for _ in 0..2 {
            let mut batch = c
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(10))
                .messages()
                .await
                .expect("a pull");
            if let Some(Ok(m)) = batch.next().await {
                delivered = m.info().expect("its info").delivered;
            }
        }
        delivered
    });
    assert_eq!(delivered, 2);
    // Past the last deadline, a worker: it holds the lease and reports the document.
    std::thread::sleep(Duration::from_millis(1500));
    let w = worker(&server.url, &dir.join("worker.log"));
    let st = wait(sub, Duration::from_secs(60));
    assert_eq!(st.code(), Some(3), "a failed document");
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["path"], doc.to_str().unwrap());
    assert_eq!(lines[0]["status"], "error");
    let message = lines[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("delivered 2 times"), "{message}");
    assert!(drain(w).success());
    let reported = summary_field(&dir.join("worker.log"), "poison_reported");
    assert_eq!(reported, 1);
}

/// A document that runs for several ack deadlines is kept by its worker's in-progress
/// acks: it is never delivered to the other worker, and runs once.
#[test]
fn a_long_document_is_kept_alive_by_in_progress_acks() {
    let dir = tmp("cluster", "progress");
    let Some(server) = server(&dir) else {
        return;
    };
    let slow = dir.join("slow.pdf");
    std::fs::write(&slow, pdfgen::slow_pdf(40)).unwrap();
    let a = worker_with(&server.url, &dir.join("worker-a.log"), "1s");
    let b = worker_with(&server.url, &dir.join("worker-b.log"), "1s");
    let out = dir.join("out.jsonl");
    let t = Instant::now();
    let sub = submit(
        &server.url,
        &[slow.to_str().unwrap(), "--timeout-per-doc", "120s"],
        &out,
        &dir.join("submit.log"),
    );
    let st = wait(sub, Duration::from_secs(300));
    let took = t.elapsed();
    assert!(st.code().is_some_and(|c| c == 0 || c == 3), "{st}");
    assert_eq!(count_lines(&out), 1);
    assert!(drain(a).success() && drain(b).success());
    // Meaningful only if the document outlasted the deadline a few times over.
    assert!(
        took > Duration::from_secs(3),
        "the document took only {took:?}"
    );
    let [(sa, da), (sb, db)] = ["worker-a.log", "worker-b.log"].map(|l| {
        let log = dir.join(l);
        (
            summary_field(&log, "stored"),
            summary_field(&log, "duplicates"),
        )
    });
    assert_eq!(
        (sa + sb, da + db),
        (1, 0),
        "run once, never delivered again"
    );
}

/// The lease against a real server: one holder at a time; it passes to another once its
/// holder stops renewing (and the holder, renewing late, finds it lost), and at once when
/// it is released.
#[test]
fn one_lease_holder_at_a_time_and_the_lease_passes_on() {
    use neuralflow_swarm::cluster::lease::Lease;
    let dir = tmp("cluster", "lease");
    let Some(server) = server(&dir) else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.url.clone();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let ttl = Duration::from_secs(1);
        let mut a = Lease::new(&js, "k", "a".into(), ttl, 1).await.unwrap();
        let mut b = Lease::new(&js, "k", "b".into(), ttl, 1).await.unwrap();
        assert_eq!(a.ttl(), ttl);
        assert!(a.tick().await, "the first takes it");
        assert!(!b.tick().await, "the second does not");
        // a renews for a while; b keeps trying and never gets it.
        for _ in 0..6 {
            tokio::time::sleep(ttl / 3).await;
            assert!(a.tick().await, "renewed");
            assert!(!b.tick().await, "still a's");
        }
        // a stops renewing: past the lease's time, b takes it.
        tokio::time::sleep(ttl + ttl / 2).await;
        assert!(b.tick().await, "expired, taken over");
        assert!(!a.tick().await, "a finds it lost");
        // b gives it up: a gets it at once.
        b.release().await;
        tokio::time::sleep(ttl / 3).await;
        assert!(a.tick().await, "released, taken at once");
    });
}

/// `--replicas 3` against a server that is not part of a cluster: bad usage, said at once
/// (not tried again for a minute), exit 2.
#[test]
fn replicas_on_a_single_server_are_refused_as_bad_usage() {
    let Some((corpus, dir, server)) = setup("replicas") else {
        return;
    };
    let doc = first_pdf(&corpus.join("real"));
    let out = swarm()
        .args([
            "submit",
            "--nats",
            &server.url,
            "--replicas",
            "3",
            "--output",
        ])
        .arg(dir.join("out.jsonl"))
        .arg(&doc)
        .output()
        .expect("swarm submit");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not part of a cluster"), "{err}");
}

/// A document whose line is larger than the server's largest message (a generated one
/// of 200 pages, a line of megabytes): its line travels as a blob named by its content,
/// and comes out whole, as `swarm run` writes it, in a first job of the file and in a
/// second.
#[test]
fn a_line_larger_than_a_message_comes_through_whole() {
    use neuralflow_swarm::pdf::demo::{write_corpus, DemoSpec};
    let dir = tmp("cluster", "large");
    let Some(server) = server(&dir) else { return };
    let spec = DemoSpec {
        documents: 1,
        min_pages: 200,
        max_pages: 200,
        ..DemoSpec::default()
    };
    let doc = write_corpus(&dir.join("corpus"), spec).expect("a corpus")[0]
        .path
        .clone();
    let want = reference(std::slice::from_ref(&doc), &dir.join("reference.jsonl"));
    let longest = want.keys().map(String::len).max().unwrap_or(0);
    assert!(longest > 1 << 20, "the line is only {longest} bytes");
    let a = worker(&server.url, &dir.join("worker-a.log"));
    let b = worker(&server.url, &dir.join("worker-b.log"));
    for round in 0..2 {
        let out = dir.join(format!("out-{round}.jsonl"));
        let st = wait(
            submit(
                &server.url,
                &[doc.to_str().unwrap()],
                &out,
                &dir.join(format!("submit-{round}.log")),
            ),
            Duration::from_secs(120),
        );
        assert_eq!(st.code(), Some(0), "{st}");
        assert_same(&lines(&out), &want);
    }
    assert!(drain(a).success() && drain(b).success());
}
