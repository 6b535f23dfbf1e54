//! `swarm run` end to end: real agent processes over the shared corpus.
//!
//! The corpus lives beside the repository (`../shared/corpus`). Without it these tests are
//! skipped with a message, except under `CI=true`, where a missing corpus fails them.

#[path = "common/cli.rs"]
mod cli;

use cli::{corpus, swarm};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of a JSON Lines file, by path.
fn by_path(file: &Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["path"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn run_ok(args: &[&str]) -> std::process::Output {
    let out = swarm()
        .arg("run")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "swarm run {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn page_counts_match_pdfinfo_for_every_document_read() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("run", "counts");
    let out = dir.join("out.jsonl");
    let summary = dir.join("summary.json");
    run_ok(&[
        "--agents",
        "2",
        "--output",
        out.to_str().unwrap(),
        "--summary",
        summary.to_str().unwrap(),
        c.join("real").to_str().unwrap(),
    ]);
    let manifest: BTreeMap<String, String> = std::fs::read_to_string(c.join("manifest.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.rsplit('/').next()?.to_string(),
                f.get(1)?.to_string(),
            ))
        })
        .collect();
    let results = by_path(&out);
    let real = std::fs::read_dir(c.join("real")).unwrap().count();
    assert_eq!(results.len(), real, "one line per document");
    let mut ok = 0;
    for (path, v) in &results {
        let name = path.rsplit('/').next().unwrap();
        if v["status"] == "ok" {
            ok += 1;
            let want = &manifest[name];
            assert_eq!(v["page_count"].to_string(), *want, "{name}");
            assert_eq!(
                v["pages"].as_array().unwrap().len().to_string(),
                *want,
                "{name}"
            );
            for (i, p) in v["pages"].as_array().unwrap().iter().enumerate() {
                assert_eq!(p["number"], i + 1, "{name}: pages in order");
                assert!(p["text"].is_string() && p["lines"].is_array() && p["blocks"].is_array());
            }
        } else {
            let kind = v["error"]["kind"].as_str().unwrap();
            assert!([
                "malformed",
                "encrypted",
                "unsupported",
                "timeout",
                "agent_crashed",
                "too_large",
                "io"
            ]
            .contains(&kind));
        }
    }
    // Regression guard: today 506 of 511 read cleanly (3 cannot be opened, 2 have pages
    // that fail).
    assert!(ok >= 503, "only {ok} documents ok");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["documents"], real);
    assert!(s["pages_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn every_hostile_file_ends_as_a_result_or_an_error_within_its_bound() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("run", "hostile");
    let out = dir.join("out.jsonl");
    let files = std::fs::read_dir(c.join("hostile")).unwrap().count();
    let t = Instant::now();
    run_ok(&[
        "--agents",
        "2",
        "--memory-limit",
        "1G",
        "--timeout-per-doc",
        "10s",
        "--output",
        out.to_str().unwrap(),
        c.join("hostile").to_str().unwrap(),
    ]);
    // Two agents, each document bounded by 10 s: the whole run is bounded by half the
    // documents times the budget (in practice it takes a couple of seconds).
    assert!(t.elapsed() < Duration::from_secs(10) * files as u32 / 2);
    let results = by_path(&out);
    assert_eq!(results.len(), files);
    for (path, v) in results {
        match v["status"].as_str().unwrap() {
            "ok" => {}
            "partial" | "error" => assert!(v["error"]["kind"].is_string(), "{path}: {v}"),
            other => panic!("{path}: status {other}"),
        }
    }
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// Runs `swarm run ARGS INPUT` while SIGKILLing one of its agents at random every 200 ms;
/// returns how many were killed.
fn run_under_chaos(args: &[&str], input: &Path) -> u32 {
    let mut child = swarm().arg("run").args(args).arg(input).spawn().unwrap();
    let pid = child.id();
    let mut kills = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "chaos run did not finish");
        std::thread::sleep(Duration::from_millis(200));
        let kids = children(pid);
        if !kids.is_empty() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let victim = kids[(rng % kids.len() as u64) as usize];
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(victim as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                kills += 1;
            }
        }
    };
    assert!(matches!(status.code(), Some(0 | 3)), "{status:?}");
    eprintln!("{kills} agents killed during the run");
    kills
}

#[test]
fn output_under_sigkill_chaos_is_identical_to_a_fault_free_run() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("run", "chaos");
    let clean = dir.join("clean.jsonl");
    let chaos = dir.join("chaos.jsonl");
    let input = c.join("real");
    run_ok(&[
        "--agents",
        "3",
        "--output",
        clean.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    run_under_chaos(
        &[
            "--agents",
            "3",
            "--chunk-pages",
            "2",
            "--output",
            chaos.to_str().unwrap(),
        ],
        &input,
    );
    assert_eq!(
        by_path(&clean),
        by_path(&chaos),
        "output differs under chaos"
    );
}

/// Runs `input` through 2 generalists and through the specialists `roles` (with the
/// `extra` arguments both times), into `NAME-general.jsonl` and `NAME-special.jsonl` in
/// `dir`; returns those two paths.
fn generalists_and_specialists(
    dir: &Path,
    name: &str,
    roles: &str,
    input: &Path,
    extra: &[&str],
) -> (PathBuf, PathBuf) {
    let out = |kind: &str| dir.join(format!("{name}-{kind}.jsonl"));
    let (general, special) = (out("general"), out("special"));
    for (how, value, output) in [("--agents", "2", &general), ("--roles", roles, &special)] {
        let mut args = vec![how, value, "--output", output.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(input.to_str().unwrap());
        run_ok(&args);
    }
    (general, special)
}

/// Specialists (pages moving Parser → Extractor → Analyzer → Aggregator through page
/// buffers) write the same lines as generalists, on real and hostile documents, and
/// still do under SIGKILL chaos.
#[test]
fn specialists_and_generalists_write_identical_output_even_under_chaos() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("run", "roles");
    let roles = "parser=1,extractor=2,analyzer=1,aggregator=1";
    for set in ["real", "hostile"] {
        let input = c.join(set);
        let (general, special) =
            generalists_and_specialists(&dir, set, roles, &input, &["--timeout-per-doc", "20s"]);
        let (g, s) = (by_path(&general), by_path(&special));
        assert_eq!(g.len(), std::fs::read_dir(&input).unwrap().count());
        for (path, line) in &g {
            assert_eq!(Some(line), s.get(path), "{path}: specialists differ");
        }
        assert_eq!(g.len(), s.len());
    }
    let chaos = dir.join("chaos.jsonl");
    let input = c.join("real");
    let kills = run_under_chaos(
        &[
            "--roles",
            roles,
            "--chunk-pages",
            "2",
            "--output",
            chaos.to_str().unwrap(),
        ],
        &input,
    );
    assert!(kills > 0, "the chaos run ended before any agent was killed");
    assert_eq!(
        by_path(&dir.join("real-general.jsonl")),
        by_path(&chaos),
        "specialists' output differs under chaos"
    );
}

/// A run's last document is also given, at once, to agents that would otherwise wait
/// for its page count: ranges asked for ahead, some of them past the end (the 14-page
/// document with 8 agents and 5-page ranges), still give every page once, in order.
#[test]
fn a_long_document_is_spread_over_agents_and_reassembled_in_order() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("run", "long");
    let out = dir.join("out.jsonl");
    for (agents, name, pages) in [
        ("2", "samplefiles__GeoTopo-komprimiert", 117u64),
        ("4", "samplefiles__GeoTopo-komprimiert", 117),
        ("8", "pdfjs__tracemonkey", 14),
    ] {
        let doc = c.join(format!("real/{name}.pdf"));
        run_ok(&[
            "--agents",
            agents,
            "--chunk-pages",
            "5",
            "--output",
            out.to_str().unwrap(),
            doc.to_str().unwrap(),
        ]);
        let r = by_path(&out);
        let v = r.values().next().unwrap();
        assert_eq!(v["status"], "ok", "{name} with {agents} agents");
        assert_eq!(v["page_count"], pages);
        let numbers: Vec<u64> = v["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["number"].as_u64().unwrap())
            .collect();
        assert_eq!(
            numbers,
            (1..=pages).collect::<Vec<u64>>(),
            "{name} with {agents} agents"
        );
    }
}

#[test]
fn exit_status_says_what_happened() {
    let none = swarm().arg("run").output().unwrap();
    assert_eq!(none.status.code(), Some(2), "no input is bad usage");
    let missing = swarm()
        .args(["run", "/nonexistent/input.pdf"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let bad_flag = swarm()
        .args(["run", "--agents", "many", "x.pdf"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(2));

    let dir = cli::tmp("run", "exit");
    let garbage = dir.join("garbage.pdf");
    std::fs::write(&garbage, b"this is not a PDF at all").unwrap();
    let out = swarm()
        .args(["run", "--agents", "1"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "a failed document");
    let line: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii_end()).unwrap();
    assert_eq!(line["status"], "error");
    assert_eq!(line["error"]["kind"], "malformed");

    let Some(c) = corpus() else { return };
    let list = dir.join("list.txt");
    std::fs::write(
        &list,
        c.join("real/samplefiles__minimal-document.pdf")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let out = swarm()
        .args(["run", "--agents", "1", "--files-from"])
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii_end()).unwrap();
    assert_eq!(line["status"], "ok");
}

/// `swarm demo` needs no input: it generates its corpus, runs it through agents and
/// checks every page against the words it was generated from; on an elastic pool
/// (`--agents 1..3`) as on a fixed one.
#[test]
fn demo_runs_a_generated_corpus_and_every_page_matches_its_text() {
    for agents in ["2", "1..3"] {
        demo_with(agents);
    }
}

fn demo_with(agents: &str) {
    let dir = cli::tmp("run", "demo");
    let out = swarm()
        .args([
            "demo",
            "--agents",
            agents,
            "--documents",
            "6",
            "--json",
            "--dir",
        ])
        .arg(&dir)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["run"]["documents"], 6);
    assert!(r["run"]["pages"].as_u64().unwrap() >= 6 * 8);
    assert_eq!(r["pages_exact"], 1.0);
    assert_eq!(r["word_f1"], 1.0);
    // The output is kept in --dir, one line per generated document.
    assert_eq!(by_path(&dir.join("output.jsonl")).len(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `swarm bench pipeline` measures in-process, swarm and specialists in one run and says
/// so in its JSON (the numbers themselves are for the README, not for assertions).
#[test]
fn bench_pipeline_reports_every_phase() {
    let out = swarm()
        .args([
            "bench",
            "pipeline",
            "--agents",
            "1,2",
            "--roles",
            "parser=1,extractor=1,analyzer=1,aggregator=1",
            "--long-pages",
            "40",
            "--repeat",
            "1",
            "--json",
        ])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let pages = r["pages"].as_u64().unwrap();
    assert!(pages > 300, "{r}");
    assert!(r["in_process"]["pages_per_second"].as_f64().unwrap() > 0.0);
    let swarm = r["swarm"].as_array().unwrap();
    assert_eq!(swarm.len(), 2);
    for row in swarm {
        assert!(row["pages_per_second"].as_f64().unwrap() > 0.0, "{row}");
        // The agents did the work (reaped children's CPU), and starting and stopping
        // them with no documents takes time of its own.
        assert!(row["worker_cpu_seconds"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["empty_run_seconds"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert!(r["specialists"]["pages_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(r["long_document"]["pages"], 40);
    assert!(r["long_document"]["speedup"].as_f64().unwrap() > 0.0);
}

/// Fonts whose encoding is the embedded program's own (TeX's CFF fonts put ligatures at
/// codes 11 to 15), Type3 fonts with odd matrices, form fields without drawn text,
/// Chinese fonts that say WinAnsi while their strings are GBK, and CJK CID fonts without
/// ToUnicode give whole words.
#[test]
fn fonts_and_form_fields_give_whole_words() {
    let Some(c) = corpus() else { return };
    for (file, words) in [
        (
            "pdfjs__issue6132.pdf",
            &["efficient", "finite", "field"][..],
        ),
        ("pdfjs__issue6605.pdf", &["will", "suggest"][..]),
        // Form fields whose appearance streams are empty: the values come from /V.
        ("samplefiles__libreoffice-form.pdf", &["Alice", "Bob"][..]),
        // GBK bytes in fonts named SimSun and FangSong_GB2312 that claim WinAnsi: "目录"
        // (contents), "红军" (Red Army), one character a word (the text is spaced).
        ("pdfjs__XiaoBiaoSong.pdf", &["目", "录", "红", "军"][..]),
        // CID fonts of Adobe-Korea1 and Adobe-Japan1 without ToUnicode: the collections'
        // own CID-to-Unicode tables; the second writes vertically, in columns.
        ("pdfjs__bug1771477.pdf", &["안녕하세요", "세계"][..]),
        ("pdfjs__vertical.pdf", &["あいうえお", "日本語"][..]),
        // Predefined CJK encodings (Shift-JIS, EUC-JP, GB) on non-embedded fonts: codes
        // to CIDs through Adobe's CMaps, CIDs to text through the collections' tables.
        ("pdfjs__90ms_rksj_h_sample.pdf", &["日本語テスト"][..]),
        ("pdfjs__noembed-eucjp.pdf", &["あいうえお"][..]),
        ("pdfjs__issue3521.pdf", &["我们都是黑体字"][..]),
    ] {
        let out = swarm()
            .arg("extract")
            .arg(c.join("real").join(file))
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let text: String = v["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let found: std::collections::HashSet<&str> =
            text.split(|ch: char| !ch.is_alphanumeric()).collect();
        for w in words {
            assert!(found.contains(w), "{file}: no {w:?} in the text");
        }
    }
}

/// A document whose line might not fit one agent output (more pages than the
/// Aggregator's pool allows at 64 KiB a page) is assembled by the job from the analyzers'
/// held replies, and still matches the generalists byte for byte.
#[test]
fn specialists_assemble_a_huge_document_themselves() {
    let dir = cli::tmp("run", "huge");
    let made = swarm()
        .args(["demo", "--documents", "1", "--min-pages", "1200", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    const ROLES: &str = "parser=1,extractor=1,analyzer=1,aggregator=1";
    let (general, special) =
        generalists_and_specialists(&dir, "huge", ROLES, &dir.join("corpus"), &[]);
    // Past a quarter of the specialists' 64 MiB slab: too big for the Aggregator.
    let head = std::fs::read(&special).unwrap();
    assert!(
        head.len() > 16 << 20,
        "{}",
        String::from_utf8_lossy(&head[..head.len().min(600)])
    );
    let (g, s) = (by_path(&general), by_path(&special));
    let line = g.values().next().unwrap();
    assert_eq!(line["status"], "ok");
    assert!(line["page_count"].as_u64().unwrap() >= 1200);
    assert_eq!(g, s);

    // The Analyzer stalls (SIGSTOP for 3 s) while the Parser and the Extractor go on.
    // Extracted glyphs are ten times the parsed pages: the supervisor's graph flow control
    // lets no new range in while stage outputs wait, and kept outputs past half of its
    // pool go to its memory, so no stage waits for room. With ranges of 64 pages (14 MB of
    // glyphs each) it must end ok and identical. (Its deadline is long, so that a slow
    // machine is not taken for a stuck pipeline.)
    let stalled = dir.join("huge-stalled.jsonl");
    let mut child = swarm()
        .args(["run", "--roles", ROLES, "--chunk-pages", "64"])
        .args(["--timeout-per-doc", "120s", "--output"])
        .arg(&stalled)
        .arg(dir.join("corpus"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let analyzer = loop {
        // Slots go to the roles in order: parser 0, extractor 1, analyzer 2.
        let found = children(child.id()).into_iter().find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.windows(9).any(|w| w == b"--slot\x002\x00"))
        });
        if let Some(p) = found {
            break nix::unistd::Pid::from_raw(p as i32);
        }
        assert!(Instant::now() < deadline, "no analyzer started");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended too soon"
    );
    nix::sys::signal::kill(analyzer, nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(analyzer, nix::sys::signal::Signal::SIGCONT).unwrap();
    let status = child.wait().unwrap();
    assert!(matches!(status.code(), Some(0 | 3)), "{status:?}");
    assert_eq!(by_path(&stalled), g);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `cmd` to its end, its output captured, killing it (and failing) past `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Bug 9: `swarm extract` gave a partial document's error the kind of its first failing
/// page, `swarm run` always said `malformed`. One renderer now writes both lines: the same
/// partial document (its one page has an undecodable image stream: `unsupported`) gets
/// the same line, error kind and all, from extract, generalists and specialists.
#[test]
fn extract_and_run_report_the_same_error_kind_for_a_partial_document() {
    let Some(c) = corpus() else { return };
    let doc = c.join("real/pdfjs__bomb_giant.pdf");
    let limit = Duration::from_secs(60);
    let mut extract = swarm();
    extract.arg("extract").arg(&doc);
    let mut general = swarm();
    general.args(["run", "--agents", "1"]).arg(&doc);
    let mut special = swarm();
    special
        .args([
            "run",
            "--roles",
            "parser=1,extractor=1,analyzer=1,aggregator=1",
        ])
        .arg(&doc);
    let lines: Vec<serde_json::Value> = [extract, general, special]
        .into_iter()
        .map(|cmd| {
            let out = output_within(cmd, limit);
            assert!(
                matches!(out.status.code(), Some(0 | 3)),
                "{:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(out.stdout.trim_ascii_end()).unwrap()
        })
        .collect();
    let (extracted, page) = (&lines[0], &lines[0]["pages"][0]);
    assert_eq!(extracted["status"], "partial");
    assert_eq!(page["error"]["kind"], "unsupported", "{page}");
    assert_eq!(extracted["error"]["kind"], page["error"]["kind"]);
    for line in &lines[1..] {
        assert_eq!(line["error"]["kind"], extracted["error"]["kind"]);
        assert_eq!(line, extracted);
    }
}

/// Bug 11: `swarm run EMPTY_DIR` exited 0 and wrote nothing, so a user with a wrong path
/// learned nothing. Inputs without a PDF are now named on stderr, with exit status 2 (bad
/// usage), whether they are directories or a `--files-from` list.
#[test]
fn run_on_inputs_without_a_pdf_names_them_and_exits_2() {
    let dir = cli::tmp("run", "no-pdf");
    let empty = dir.join("empty");
    let not_pdf = dir.join("notes");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&not_pdf).unwrap();
    std::fs::write(not_pdf.join("readme.txt"), b"no PDF here").unwrap();
    let list = dir.join("list.txt");
    std::fs::write(&list, b"\n\n").unwrap();
    let limit = Duration::from_secs(30);
    let mut cmd = swarm();
    cmd.args(["run", "--agents", "1"]).arg(&empty).arg(&not_pdf);
    let out = output_within(cmd, limit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no PDF found"), "{stderr}");
    for p in [&empty, &not_pdf] {
        assert!(stderr.contains(p.to_str().unwrap()), "{stderr}");
    }
    assert!(out.stdout.is_empty());
    let mut cmd = swarm();
    cmd.args(["run", "--agents", "1", "--files-from"])
        .arg(&list);
    let out = output_within(cmd, limit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no PDF found"), "{stderr}");
    assert!(stderr.contains(list.to_str().unwrap()), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bug 11: a path that does not exist is named on stderr (every one of them, not only the
/// first), with exit status 2, and nothing is run.
#[test]
fn run_on_paths_that_do_not_exist_names_each_and_exits_2() {
    let dir = cli::tmp("run", "missing");
    let (a, b) = (dir.join("a.pdf"), dir.join("gone"));
    let mut cmd = swarm();
    cmd.args(["run", "--agents", "1"]).arg(&a).arg(&dir).arg(&b);
    let out = output_within(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for p in [&a, &b] {
        assert!(
            stderr.contains(&format!("{}: no such file or directory", p.display())),
            "{stderr}"
        );
    }
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bug 11: `swarm run --agents 0` ran anyway. Zero agents is refused when the arguments
/// are parsed, with a message that says why and exit status 2, for `demo` too.
#[test]
fn zero_agents_are_refused_at_argument_parsing() {
    let dir = cli::tmp("run", "zero");
    let doc = dir.join("doc.pdf");
    std::fs::write(&doc, b"not read").unwrap();
    let mut run = swarm();
    run.args(["run", "--agents", "0"]).arg(&doc);
    let mut demo = swarm();
    demo.args(["demo", "--agents", "0", "--documents", "1"]);
    for cmd in [run, demo] {
        let what = format!("{cmd:?}");
        let out = output_within(cmd, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("at least one agent"), "{what}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Real and hostile documents, each also under a second name: with the shared cache, the
/// copies' ranges come from it, and every line (each copy with its own path) is what
/// `--no-cache` writes.
#[test]
fn byte_identical_documents_are_extracted_once_and_each_gets_its_line() {
    let Some(corpus) = corpus() else { return };
    let dir = cli::tmp("run", "dups");
    let mut n = 0;
    for sub in ["real", "hostile"] {
        let mut names: Vec<_> = std::fs::read_dir(corpus.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
            .collect();
        names.sort();
        for p in names.into_iter().step_by(8) {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            std::fs::copy(&p, dir.join(format!("{sub}-{name}"))).unwrap();
            std::fs::copy(&p, dir.join(format!("{sub}-again-{name}"))).unwrap();
            n += 2;
        }
    }
    let (with, without) = (dir.join("with.jsonl"), dir.join("without.jsonl"));
    let summary = dir.join("summary.json");
    let input = dir.to_string_lossy().to_string();
    let out = |f: &Path| f.to_string_lossy().to_string();
    run_ok(&[
        "--agents",
        "2",
        "--output",
        &out(&with),
        "--summary",
        &out(&summary),
        &input,
    ]);
    run_ok(&[
        "--agents",
        "2",
        "--no-cache",
        "--output",
        &out(&without),
        &input,
    ]);
    let (a, b) = (by_path(&with), by_path(&without));
    assert_eq!(a.len(), n);
    assert_eq!(a, b);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(s["cache_hits"].as_u64().unwrap() > 0, "{s}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--log-format json`: every log line on stderr is one JSON object with its level,
/// target and message; the output is unchanged.
#[test]
fn json_logs_are_one_object_a_line() {
    let dir = cli::tmp("run", "jsonlog");
    let made = swarm()
        .args(["demo", "--documents", "2", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let out = swarm()
        .args(["run", "--agents", "1", "--log-format", "json"])
        .arg(dir.join("corpus"))
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "{stderr}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{l}");
        assert!(v["fields"]["message"].is_string(), "{l}");
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
