//! `swarm run --journal` end to end: the supervisor SIGKILLed mid-run, then the same
//! command again, on the real corpus with byte-identical copies among its files.
//!
//! Needs the corpus beside the repository; under `CI=true` a missing one fails.

#[path = "common/cli.rs"]
mod cli;

use cli::{corpus, swarm};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The real corpus, and a copy of every fifth file under another name, in `dir/in`.
fn inputs(c: &Path, dir: &Path) -> PathBuf {
    let input = dir.join("in");
    let copies = input.join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(c.join("real"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_str().unwrap();
        std::fs::copy(f, input.join(name)).unwrap();
        if i % 5 == 0 {
            std::fs::copy(f, copies.join(format!("copy-{name}"))).unwrap();
        }
    }
    input
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn path_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["path"].as_str().unwrap().to_string()
}

/// Starts `swarm run` with `args` and SIGKILLs it (the supervisor alone, as a crash
/// would) once `out` has at least `after` lines.
fn run_and_kill(args: &[&str], out: &Path, after: usize) {
    let mut child = swarm()
        .arg("run")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(out).len() < after {
        assert!(Instant::now() < deadline, "the run did not get going");
        if child.try_wait().unwrap().is_some() {
            panic!("the run ended before it could be killed; give it more to do");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
}

fn summary(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// What an uninterrupted run writes, by path.
fn reference(input: &Path) -> BTreeMap<String, String> {
    let out = swarm()
        .args(["run", "--agents", "2", input.to_str().unwrap()])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| (path_of(l), l.to_string()))
        .collect()
}

#[test]
fn a_run_killed_and_run_again_writes_each_document_once_across_two_outputs() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("journal", "two");
    let input = inputs(&c, &dir);
    let journal = dir.join("journal");
    let (o1, o2) = (dir.join("o1.jsonl"), dir.join("o2.jsonl"));
    let s2 = dir.join("s2.json");
    let common = ["--agents", "1", "--journal", journal.to_str().unwrap()];
    let mut first: Vec<&str> = common.to_vec();
    first.extend(["--output", o1.to_str().unwrap(), input.to_str().unwrap()]);
    run_and_kill(&first, &o1, 120);
    // A crash can leave a record cut short: this one is.
    let mut j = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    j.write_all(b"{\"hash\":\"0123").unwrap();
    drop(j);
    let before = lines(&o1);
    let mut second: Vec<&str> = common.to_vec();
    second.extend([
        "--output",
        o2.to_str().unwrap(),
        "--summary",
        s2.to_str().unwrap(),
    ]);
    second.push(input.to_str().unwrap());
    let st = swarm().arg("run").args(&second).status().unwrap();
    assert!(matches!(st.code(), Some(0 | 3)), "{st:?}");
    let after = lines(&o2);

    // Every document exactly once across the two outputs, each line as an uninterrupted
    // run writes it.
    let want = reference(&input);
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for l in before.iter().chain(&after) {
        assert!(
            got.insert(path_of(l), l.clone()).is_none(),
            "twice: {}",
            path_of(l)
        );
    }
    assert_eq!(got, want);
    // Nothing finished before the kill was extracted again; copies of documents done
    // then came from the journal.
    let s = summary(&s2);
    assert_eq!(s["journaled"], before.len() as u64);
    assert_eq!(s["documents"], after.len() as u64);
    let copies_of_done = after
        .iter()
        .filter(|l| {
            let p = path_of(l);
            let name = Path::new(&p).file_name().unwrap().to_str().unwrap();
            p.contains("/copies/")
                && before.iter().any(|b| {
                    path_of(b)
                        == input
                            .join(name.trim_start_matches("copy-"))
                            .display()
                            .to_string()
                })
        })
        .count() as u64;
    assert!(
        s["from_journal"].as_u64().unwrap() >= copies_of_done,
        "{s} < {copies_of_done}"
    );
    // Once more: nothing is left to do, and nothing is written.
    let o3 = dir.join("o3.jsonl");
    let mut third: Vec<&str> = common.to_vec();
    third.extend(["--output", o3.to_str().unwrap(), input.to_str().unwrap()]);
    let st = swarm().arg("run").args(&third).status().unwrap();
    assert!(matches!(st.code(), Some(0 | 3)));
    assert!(lines(&o3).is_empty());
    // Byte-identical files share one entry: the journal keeps each line once.
    let records = lines(&journal);
    let with_line = records.iter().filter(|r| r.contains("\"line\":")).count();
    assert_eq!(records.len(), want.len());
    let distinct = std::fs::read_dir(&input)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(with_line, distinct);
}

#[test]
fn a_run_killed_and_run_again_into_the_same_output_file_has_each_document_once() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("journal", "same");
    let input = inputs(&c, &dir);
    let journal = dir.join("journal");
    let out = dir.join("out.jsonl");
    let args = [
        "--agents",
        "1",
        "--journal",
        journal.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ];
    for after in [60, 240] {
        run_and_kill(&args, &out, after);
    }
    let st = swarm().arg("run").args(args).status().unwrap();
    assert!(matches!(st.code(), Some(0 | 3)), "{st:?}");
    let want = reference(&input);
    let mut got = BTreeMap::new();
    for l in lines(&out) {
        assert!(
            got.insert(path_of(&l), l.clone()).is_none(),
            "twice: {}",
            path_of(&l)
        );
    }
    assert_eq!(got, want);
}

/// A listed file that cannot be read gets its error line once, and the lines after it
/// are where the journal says: running the finished command again changes nothing.
#[test]
fn an_unreadable_input_is_recorded_and_a_rerun_leaves_the_output_whole() {
    let Some(c) = corpus() else { return };
    let dir = cli::tmp("journal", "unreadable");
    let mut list = String::from("/nonexistent/missing.pdf\n");
    let mut files: Vec<PathBuf> = std::fs::read_dir(c.join("real"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files.iter().take(20) {
        list.push_str(&format!("{}\n", f.display()));
    }
    let list_file = dir.join("list.txt");
    std::fs::write(&list_file, list).unwrap();
    let (journal, out) = (dir.join("journal"), dir.join("out.jsonl"));
    let args = [
        "run",
        "--agents",
        "1",
        "--journal",
        journal.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--files-from",
        list_file.to_str().unwrap(),
    ];
    // The first run fails the missing file's document (exit 3); the second has nothing
    // left to do, so nothing fails in it (exit 0).
    for want in [3, 0] {
        let st = swarm().args(args).stderr(Stdio::null()).status().unwrap();
        assert_eq!(st.code(), Some(want));
    }
    let got = lines(&out);
    assert_eq!(got.len(), 21, "{got:?}");
    let paths: std::collections::BTreeSet<String> = got.iter().map(|l| path_of(l)).collect();
    assert_eq!(paths.len(), 21);
    assert!(paths.contains("/nonexistent/missing.pdf"));
}
