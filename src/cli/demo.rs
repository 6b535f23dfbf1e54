//! `swarm demo`: a generated corpus through the swarm, each page checked against the text
//! it was generated from; the report as text or JSON. Not every page exact is a failure.

use super::args::SwarmArgs;
use super::{Done, Error};
use crate::pdf::demo::{self, DemoReport, DemoSpec};
use std::path::PathBuf;

/// `swarm demo`'s flags.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The agents.
    #[command(flatten)]
    pub swarm: SwarmArgs,
    /// Documents to generate.
    #[arg(long, default_value_t = 24)]
    pub documents: u32,
    /// Pages of the shortest document (lengths vary up to three times this).
    #[arg(long, default_value_t = 8)]
    pub min_pages: u32,
    /// Keep the corpus and the output here (default: a temporary directory, removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The report as text: the rate, and the check against the generated words.
pub fn render(r: &DemoReport, kept: bool) -> String {
    let s = &r.run;
    let mut text = format!(
        "{} documents, {} pages through {} agents in {:.2} s: {:.0} pages/s\n\
         text check against the generated words: {:.1}% of pages exact, word F1 {:.4}",
        s.documents,
        s.pages,
        s.agents,
        s.wall_seconds,
        s.pages_per_second,
        r.pages_exact * 100.0,
        r.word_f1
    );
    if kept {
        text.push_str(&format!("\ncorpus and output.jsonl in {}", r.dir.display()));
    }
    text
}

/// Runs `swarm demo` with its flags.
pub fn run(a: DemoArgs) -> Result<Done, Error> {
    let (dir, keep) = match a.dir {
        Some(d) => (d, true),
        None => (
            std::env::temp_dir().join(format!("swarm-demo-{}", std::process::id())),
            false,
        ),
    };
    let cfg = a.swarm.config(Vec::new());
    let spec = DemoSpec {
        documents: a.documents.max(1),
        min_pages: a.min_pages.max(1),
        max_pages: a.min_pages.max(1) * 3,
        ..DemoSpec::default()
    };
    let report = demo::run(&dir, spec, cfg);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = report.map_err(Error::from_library)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&r).map_err(Error::from_library)?
        );
    } else {
        println!("{}", render(&r, keep));
    }
    if r.run.failed_documents > 0 || r.pages_exact < 1.0 {
        return Err(Error::from_library(
            "the demo did not extract every page exactly",
        ));
    }
    Ok(Done::Ok)
}
