//! `swarm serve` end to end: the real binary, its agents, its HTTP API, its metrics read
//! by `promtool`, its status socket read by `swarm status`, and its drain on SIGTERM.
//!
//! Needs the corpus beside the repository (`../shared/corpus`) and `promtool` (Debian's
//! `prometheus`); under `CI=true` a missing one fails the test instead of skipping it.

#[path = "common/cli.rs"]
mod cli;

#[path = "common/pdfgen.rs"]
mod pdfgen;

use cli::{corpus, swarm};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `swarm serve`, killed on drop.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    /// Starts `swarm serve` on a free loopback port with `args`, and waits for it to say
    /// where it listens.
    fn start(args: &[&str]) -> Served {
        let mut child = swarm()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("swarm serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Served { child, base }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for the service to exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "swarm serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An answer: status and body.
fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match r {
        Ok(resp) => (resp.status(), resp.into_string().unwrap()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
        Err(e) => panic!("request failed: {e}"),
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn get(url: &str) -> (u16, serde_json::Value) {
    let (code, body) = answer(ureq::get(url).call());
    (code, json(&body))
}

fn post_json(url: &str, body: &str) -> (u16, serde_json::Value) {
    let (code, body) = answer(
        ureq::post(url)
            .set("Content-Type", "application/json")
            .send_string(body),
    );
    (code, json(&body))
}

/// Submits a job of `paths` with `extra` JSON fields; its id.
fn submit(s: &Served, paths: &[&Path], extra: &str) -> String {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let body = format!(
        "{{\"paths\": {}{extra}}}",
        serde_json::to_string(&paths).unwrap()
    );
    let (code, v) = post_json(&s.url("/jobs"), &body);
    assert_eq!(code, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The job's result lines, read from the stream until it ends.
fn results(s: &Served, id: &str) -> Vec<serde_json::Value> {
    let resp = ureq::get(&s.url(&format!("/jobs/{id}/results")))
        .call()
        .unwrap();
    assert_eq!(resp.header("Content-Type"), Some("application/x-ndjson"));
    BufReader::new(resp.into_reader())
        .lines()
        .map(|l| json(&l.unwrap()))
        .collect()
}

fn by_path(lines: &[serde_json::Value]) -> BTreeMap<String, serde_json::Value> {
    lines
        .iter()
        .map(|v| (v["path"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

/// `swarm run`'s lines for `dir`.
fn run_lines(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let out = swarm()
        .args(["run", "--agents", "2", dir.to_str().unwrap()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 3)));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(json)
        .collect();
    by_path(&lines)
}

/// The value of the sample `name` (with its labels as written) in exposition `text`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

#[test]
fn jobs_are_submitted_streamed_watched_and_counted() {
    let Some(c) = corpus() else { return };
    let real = c.join("real");
    let s = Served::start(&["--agents", "2", "--root", c.to_str().unwrap()]);
    assert_eq!(get(&s.url("/health")), (200, json(r#"{"status":"ok"}"#)));

    // A job of a directory: its lines stream, and they are swarm run's.
    let id = submit(&s, &[&real], r#", "priority": 2, "timeout_per_doc": "20s""#);
    let lines = results(&s, &id);
    let expected = run_lines(&real);
    assert_eq!(lines.len(), expected.len());
    assert_eq!(by_path(&lines), expected);
    let (code, st) = get(&s.url(&format!("/jobs/{id}")));
    assert_eq!(code, 200);
    assert_eq!(st["state"], "done");
    assert_eq!(st["priority"], 2);
    assert_eq!(st["timeout_per_doc_s"], 20.0);
    assert_eq!(st["documents"], expected.len() as u64);
    assert_eq!(st["documents_done"], expected.len() as u64);
    let failed = lines.iter().filter(|l| l["status"] != "ok").count() as u64;
    let pages: u64 = lines
        .iter()
        .map(|l| l["pages"].as_array().unwrap().len() as u64)
        .sum();
    assert_eq!(st["documents_failed"], failed);
    assert_eq!(st["pages"], pages);

    // An uploaded document: one line, as swarm run writes it but for the path.
    let file = real.join(expected.keys().next().unwrap());
    let bytes = std::fs::read(&file).unwrap();
    let (code, body) = answer(
        ureq::post(&s.url("/jobs?timeout_per_doc=10"))
            .set("Content-Type", "application/pdf")
            .send_bytes(&bytes),
    );
    assert_eq!(code, 201, "{body}");
    let up = json(&body)["id"].as_str().unwrap().to_string();
    let got = results(&s, &up);
    assert_eq!(got.len(), 1);
    let mut want = expected[&file.display().to_string()].clone();
    want["path"] = got[0]["path"].clone();
    assert_eq!(got[0], want);

    // The list has both; the status socket says the same as the API.
    let (_, all) = get(&s.url("/jobs"));
    assert_eq!(all.as_array().unwrap().len(), 2);
    let out = swarm()
        .args(["status", "--json", "--pid", &s.pid().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(view["command"], "serve");
    assert_eq!(view["pid"], s.pid());
    assert_eq!(view["jobs"]["done"], 2);
    assert_eq!(
        view["documents_ok"].as_u64().unwrap() + view["documents_failed"].as_u64().unwrap(),
        expected.len() as u64 + 1
    );
    assert_eq!(view["agents"].as_array().unwrap().len(), 2);
    for a in view["agents"].as_array().unwrap() {
        let pid = a["pid"].as_u64().unwrap();
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "agent {pid}");
        assert!(a["rss_kib"].as_u64().unwrap() > 0);
    }

    // Metrics: what promtool accepts, with the job's counts.
    if cli::have("promtool") {
        let text = ureq::get(&s.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        cli::promtool_check(&text);
        let docs = sample(&text, "swarm_documents_total{status=\"ok\"}")
            + sample(&text, "swarm_documents_total{status=\"failed\"}");
        assert_eq!(docs as usize, expected.len() + 1);
        assert_eq!(
            sample(&text, "swarm_documents_total{status=\"failed\"}") as u64,
            failed + u64::from(got[0]["status"] != "ok")
        );
        let up_pages = got[0]["pages"].as_array().unwrap().len() as u64;
        assert_eq!(sample(&text, "swarm_pages_total") as u64, pages + up_pages);
        assert_eq!(sample(&text, "swarm_jobs{state=\"done\"}"), 2.0);
        assert_eq!(sample(&text, "swarm_agents{state=\"ready\"}"), 2.0);
        assert_eq!(sample(&text, "swarm_queue_depth"), 0.0);
        let tasks = sample(
            &text,
            "swarm_tasks_total{kind=\"100\",outcome=\"completed\"}",
        );
        assert!(
            tasks >= docs,
            "a document is one task or more: {tasks} < {docs}"
        );
        let open = ureq::get(&s.url("/metrics"))
            .set("Accept", "application/openmetrics-text; version=1.0.0")
            .call()
            .unwrap();
        assert!(open
            .header("Content-Type")
            .unwrap()
            .starts_with("application/openmetrics-text"));
        assert!(open.into_string().unwrap().ends_with("# EOF\n"));
    }
}

#[test]
fn bad_requests_get_a_json_error_and_change_nothing() {
    let Some(c) = corpus() else { return };
    let s = Served::start(&["--agents", "1", "--root", c.join("real").to_str().unwrap()]);
    let jobs = s.url("/jobs");
    let outside = c.join("hostile");
    let cases: Vec<(u16, Result<ureq::Response, ureq::Error>)> = vec![
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string("{"),
        ),
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string(r#"{"paths": []}"#),
        ),
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string(r#"{"paths": ["x"], "colour": 1}"#),
        ),
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string(r#"{"paths": "x"}"#),
        ),
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string(r#"{"paths": ["/no/such/file.pdf"]}"#),
        ),
        (
            403,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string(&format!(r#"{{"paths": ["{}"]}}"#, outside.display())),
        ),
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string(&format!(
                    r#"{{"paths": ["{}"], "timeout_per_doc": "soon"}}"#,
                    c.join("real").display()
                )),
        ),
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/json")
                .send_string(&format!(
                    r#"{{"paths": ["{}"], "timeout_per_doc": -1}}"#,
                    c.join("real").display()
                )),
        ),
        (
            415,
            ureq::post(&jobs)
                .set("Content-Type", "text/plain")
                .send_string("a.pdf"),
        ),
        (415, ureq::post(&jobs).send_bytes(b"%PDF-1.4")),
        (
            400,
            ureq::post(&jobs)
                .set("Content-Type", "application/pdf")
                .send_bytes(b""),
        ),
        (
            400,
            ureq::post(&format!("{jobs}?priority=high"))
                .set("Content-Type", "application/pdf")
                .send_bytes(b"%PDF"),
        ),
        (404, ureq::get(&s.url("/jobs/77")).call()),
        (404, ureq::get(&s.url("/jobs/nope/results")).call()),
        (404, ureq::delete(&s.url("/jobs/77")).call()),
        (404, ureq::get(&s.url("/nothing/here")).call()),
    ];
    for (i, (want, r)) in cases.into_iter().enumerate() {
        let (code, body) = answer(r);
        assert_eq!(code, want, "case {i}: {body}");
        assert!(json(&body)["error"].is_string(), "case {i}: {body}");
    }
    // Nothing was taken as a job, and the service still works.
    let (_, all) = get(&jobs);
    assert_eq!(all.as_array().unwrap().len(), 0);
    let one = c.join("real/pdfjs__ArabicCIDTrueType.pdf");
    let id = submit(&s, &[&one], "");
    assert_eq!(results(&s, &id).len(), 1);
}

#[test]
fn a_hostile_job_does_not_hold_up_another_and_a_job_can_be_cancelled() {
    let Some(c) = corpus() else { return };
    let slow = cli::tmp("serve", "slow");
    for i in 0..6 {
        std::fs::write(slow.join(format!("slow-{i}.pdf")), pdfgen::slow_pdf(40)).unwrap();
    }
    let s = Served::start(&[
        "--agents",
        "2",
        "--root",
        c.to_str().unwrap(),
        "--root",
        slow.to_str().unwrap(),
    ]);
    // Job A: the hostile corpus and then documents that each take seconds of CPU, under a
    // budget of 2 s. Job B, right after: some real documents, under the default budget.
    let hostile = c.join("hostile");
    let a = submit(&s, &[&hostile, &slow], r#", "timeout_per_doc": "2s""#);
    let mut real: Vec<PathBuf> = std::fs::read_dir(c.join("real"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    real.sort();
    real.truncate(20);
    let refs: Vec<&Path> = real.iter().map(|p| p.as_path()).collect();
    let b = submit(&s, &refs, "");
    let b_lines = results(&s, &b);
    // B is done, every document of it ok or as it is alone, while A still runs.
    let (_, a_then) = get(&s.url(&format!("/jobs/{a}")));
    assert_eq!(b_lines.len(), 20);
    assert_eq!(a_then["state"], "running", "{a_then}");
    let alone = run_lines(&c.join("real"));
    for l in &b_lines {
        assert_eq!(&alone[l["path"].as_str().unwrap()], l);
    }
    let a_lines = results(&s, &a);
    let hostile_count = std::fs::read_dir(&hostile).unwrap().count();
    assert_eq!(a_lines.len(), hostile_count + 6);
    for l in a_lines
        .iter()
        .filter(|l| l["path"].as_str().unwrap().contains("/slow-"))
    {
        assert_eq!(l["error"]["kind"], "timeout", "{l}");
    }

    // A job of slow documents under a long budget, cancelled: it ends as cancelled, its
    // stream ends, and the agents are free for the next job.
    let long = submit(&s, &[&slow], r#", "timeout_per_doc": "120s""#);
    std::thread::sleep(Duration::from_millis(300));
    let (code, st) = answer(ureq::delete(&s.url(&format!("/jobs/{long}"))).call());
    assert_eq!(code, 200, "{st}");
    let lines = results(&s, &long);
    let (_, st) = get(&s.url(&format!("/jobs/{long}")));
    assert_eq!(st["state"], "cancelled", "{st}");
    assert!(lines.len() < 6);
    let (code, _) = answer(ureq::delete(&s.url(&format!("/jobs/{long}"))).call());
    assert_eq!(code, 409);
    let next = submit(&s, &refs, "");
    assert_eq!(results(&s, &next).len(), 20);
}

#[test]
fn sigterm_drains_the_jobs_accepted_then_exits() {
    let Some(c) = corpus() else { return };
    let slow = cli::tmp("serve", "drain");
    for i in 0..3 {
        std::fs::write(slow.join(format!("slow-{i}.pdf")), pdfgen::slow_pdf(40)).unwrap();
    }
    let mut s = Served::start(&[
        "--agents",
        "1",
        "--root",
        c.to_str().unwrap(),
        "--root",
        slow.to_str().unwrap(),
    ]);
    let id = submit(
        &s,
        &[&slow, &c.join("real")],
        r#", "timeout_per_doc": "1s""#,
    );
    let socket = neuralflow_swarm::service::control::socket_path(s.pid());
    assert!(socket.exists());
    let stream = ureq::get(&s.url(&format!("/jobs/{id}/results")))
        .call()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Draining: no new jobs, not healthy.
    let (code, v) = post_json(
        &s.url("/jobs"),
        &format!(r#"{{"paths": ["{}"]}}"#, c.join("real").display()),
    );
    assert_eq!(code, 503, "{v}");
    assert_eq!(get(&s.url("/health")).0, 503);
    // The job accepted runs to its end: every document has its line.
    let mut body = String::new();
    stream.into_reader().read_to_string(&mut body).unwrap();
    let n = std::fs::read_dir(c.join("real")).unwrap().count() + 3;
    assert_eq!(body.lines().count(), n);
    let st = s.wait(Duration::from_secs(60));
    assert!(st.success(), "{st:?}");
    assert!(!socket.exists(), "the status socket is removed at exit");
}

/// Uploads and results live in the service's spool, which no job may name even when it
/// lies under a root: one client cannot read another's documents or lines.
#[test]
fn the_spool_is_not_served_as_paths() {
    let Some(c) = corpus() else { return };
    let root = cli::tmp("serve", "spool-root");
    let spool = root.join("spool");
    std::fs::copy(
        c.join("real/pdfjs__ArabicCIDTrueType.pdf"),
        root.join("mine.pdf"),
    )
    .unwrap();
    let s = Served::start(&[
        "--agents",
        "1",
        "--root",
        root.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(c.join("real/pdfjs__90ms_rksj_h_sample.pdf")).unwrap();
    let (code, body) = answer(
        ureq::post(&s.url("/jobs"))
            .set("Content-Type", "application/pdf")
            .send_bytes(&bytes),
    );
    assert_eq!(code, 201, "{body}");
    // The whole root: its own file only, not the upload kept in the spool under it.
    let id = submit(&s, &[&root], "");
    let lines = results(&s, &id);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0]["path"].as_str().unwrap().ends_with("/mine.pdf"));
    // The uploads' folder named outright is refused; the spool above it has no PDF of
    // its own to give.
    let (code, v) = post_json(
        &s.url("/jobs"),
        &format!(r#"{{"paths": ["{}"]}}"#, spool.join("uploads").display()),
    );
    assert_eq!(code, 403, "{v}");
    let (code, v) = post_json(
        &s.url("/jobs"),
        &format!(r#"{{"paths": ["{}"]}}"#, spool.display()),
    );
    assert_eq!(code, 400, "{v}");
}
