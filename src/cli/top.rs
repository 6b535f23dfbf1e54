//! `swarm top`: a live terminal dashboard of a running `swarm run` or `swarm serve`,
//! drawn with ratatui from the [`View`] the swarm's status socket gives (one snapshot
//! each refresh; nothing else is asked of the swarm).
//!
//! Keys: `q` or Esc quits.

use super::status::Target;
use super::{Done, Error};
use crate::service::view::Sample;
use crate::service::View;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;
use std::time::{Duration, Instant};

/// `swarm top`'s flags.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Which swarm.
    #[command(flatten)]
    pub target: Target,
    /// How often to refresh (e.g. 500ms, 2s).
    #[arg(long, default_value = "1s", value_parser = crate::task::parse_duration)]
    pub interval: Duration,
}

/// Runs `swarm top` until `q`, or until the swarm is gone.
pub fn run(a: TopArgs) -> Result<Done, Error> {
    // The first look before the terminal is taken: a wrong target is said plainly.
    let mut view = a.target.fetch()?;
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), Error> {
        let mut gone = false;
        loop {
            terminal
                .draw(|f| draw(f, &view, gone))
                .map_err(|e| Error::fatal(format!("swarm top: {e}")))?;
            let next = Instant::now() + a.interval.max(Duration::from_millis(50));
            while let Some(left) = next.checked_duration_since(Instant::now()) {
                if event::poll(left).map_err(|e| Error::fatal(format!("swarm top: {e}")))? {
                    if let Ok(Event::Key(k)) = event::read() {
                        let quit = k.kind == KeyEventKind::Press
                            && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                                || (k.code == KeyCode::Char('c')
                                    && k.modifiers.contains(KeyModifiers::CONTROL)));
                        if quit {
                            return Ok(());
                        }
                    }
                }
            }
            match a.target.fetch() {
                Ok(v) => view = v,
                // The swarm ended: its last view stays on screen until `q`.
                Err(_) => gone = true,
            }
        }
    })();
    ratatui::restore();
    result.map(|()| Done::Ok)
}

/// Pages a second between consecutive samples.
fn rates(samples: &[Sample]) -> Vec<u64> {
    samples
        .windows(2)
        .map(|w| {
            let dt = (w[1].at_s - w[0].at_s).max(1e-3);
            (w[1].pages.saturating_sub(w[0].pages) as f64 / dt) as u64
        })
        .collect()
}

fn draw(f: &mut Frame, v: &View, gone: bool) {
    let [head, charts, gauges, agents] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(6),
        Constraint::Length(3),
        Constraint::Min(4),
    ])
    .areas(f.area());
    header(f, head, v, gone);
    throughput(f, charts, v);
    load(f, gauges, v);
    agent_table(f, agents, v);
}

fn header(f: &mut Frame, area: Rect, v: &View, gone: bool) {
    let docs = v.documents_ok + v.documents_failed;
    let rate = rates(&v.throughput).last().copied().unwrap_or(0);
    let mut deaths: Vec<String> = v.deaths.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if deaths.is_empty() {
        deaths.push("none".into());
    }
    let mut first = format!(
        "swarm {} pid {}  up {:.0}s  documents {} ({} failed)  pages {}  {} pages/s",
        v.command, v.pid, v.uptime_s, docs, v.documents_failed, v.pages, rate
    );
    if !v.jobs.is_empty() {
        let jobs: Vec<String> = v.jobs.iter().map(|(k, n)| format!("{k} {n}")).collect();
        first.push_str(&format!("  jobs: {}", jobs.join(", ")));
    }
    let second = format!(
        "restarts {}  retried {}  deaths: {}  supervisor cpu {:.2}s rss {} KiB{}",
        v.agent_restarts,
        v.tasks_retried,
        deaths.join(", "),
        v.supervisor_cpu_seconds,
        v.supervisor_rss_kib,
        if gone { "  [swarm ended; q quits]" } else { "" }
    );
    let p = Paragraph::new(vec![Line::from(first), Line::from(second)])
        .block(Block::default().borders(Borders::BOTTOM));
    f.render_widget(p, area);
}

fn throughput(f: &mut Frame, area: Rect, v: &View) {
    let r = rates(&v.throughput);
    // The newest samples that fit.
    let width = area.width.saturating_sub(2) as usize;
    let shown = &r[r.len().saturating_sub(width)..];
    let peak = shown.iter().copied().max().unwrap_or(0);
    let s = Sparkline::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("pages/s, last {} s (peak {peak})", shown.len())),
        )
        .data(shown)
        .style(Style::default().fg(Color::Cyan));
    f.render_widget(s, area);
}

fn load(f: &mut Frame, area: Rect, v: &View) {
    let [queue, slab] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let q = Paragraph::new(format!(
        "queue depth {}   in flight {}",
        v.queue_depth, v.in_flight
    ))
    .block(Block::default().borders(Borders::ALL).title("tasks"));
    f.render_widget(q, queue);
    let ratio = if v.slab_buffers == 0 {
        0.0
    } else {
        (v.slab_in_use as f64 / v.slab_buffers as f64).clamp(0.0, 1.0)
    };
    let g = Gauge::default()
        .block(Block::default().borders(Borders::ALL).title("slab"))
        .gauge_style(Style::default().fg(Color::Green))
        .ratio(ratio)
        .label(format!("{}/{} buffers", v.slab_in_use, v.slab_buffers));
    f.render_widget(g, slab);
}

fn agent_table(f: &mut Frame, area: Rect, v: &View) {
    let header = Row::new(
        [
            "slot",
            "pid",
            "state",
            "reported",
            "RSS KiB",
            "tasks",
            "heartbeat",
            "task",
        ]
        .map(Cell::from),
    )
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = v.agents.iter().map(|a| {
        let current = a
            .current_task
            .map(|(id, kind, ms)| format!("#{id} kind {kind}, {ms} ms"))
            .unwrap_or_else(|| "-".into());
        let style = match a.phase.as_str() {
            "ready" => Style::default(),
            "dead" | "backoff" => Style::default().fg(Color::Red),
            _ => Style::default().fg(Color::Yellow),
        };
        Row::new(vec![
            Cell::from(a.slot.to_string()),
            Cell::from(a.pid.to_string()),
            Cell::from(a.phase.clone()),
            Cell::from(a.reported.clone()),
            Cell::from(a.rss_kib.to_string()),
            Cell::from(a.tasks_done.to_string()),
            Cell::from(format!("{} ms", a.heartbeat_age_ms)),
            Cell::from(current),
        ])
        .style(style)
    });
    let t = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(17),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Min(12),
        ],
    )
    .header(header)
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(format!("agents ({})", v.agents.len())),
    );
    f.render_widget(t, area);
}
