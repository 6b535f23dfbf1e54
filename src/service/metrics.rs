//! A [`View`] as Prometheus exposition, encoded by `prometheus-client` (the OpenMetrics
//! text format, which Prometheus scrapes and `promtool check metrics` reads).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `swarm_tasks` | counter | `kind`, `outcome` (`completed`, `failed`) |
//! | `swarm_task_run_seconds` | histogram | `kind` |
//! | `swarm_documents` | counter | `status` (`ok`, `failed`) |
//! | `swarm_pages` | counter | |
//! | `swarm_agent_deaths` | counter | `cause` |
//! | `swarm_agent_restarts` | counter | |
//! | `swarm_tasks_retried` | counter | |
//! | `swarm_queue_depth` | gauge | |
//! | `swarm_tasks_in_flight` | gauge | |
//! | `swarm_agents` | gauge | `state` |
//! | `swarm_slab_buffers` | gauge | |
//! | `swarm_slab_buffers_in_use` | gauge | |
//! | `swarm_supervisor_cpu_seconds` | counter | |
//! | `swarm_supervisor_resident_bytes` | gauge | |
//! | `swarm_jobs` | gauge | `state` (`serve` only) |
//!
//! Counters are exposed with their `_total` suffix, as OpenMetrics has them.

use super::view::View;
use crate::supervisor::RUN_TIME_BOUNDS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`to_classic`]'s text.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the classic Prometheus text format (0.0.4), for the clients that
/// ask for no OpenMetrics (Prometheus itself asks for it; `promtool check metrics` and
/// older scrapers read the classic one). The samples are the same; a counter's family is
/// named as its samples are, with `_total` (OpenMetrics names it without), and the
/// `# EOF` line goes. Nothing else differs between the two for the metrics here.
pub fn to_classic(open: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        {
            counters.insert(name);
        }
    }
    let mut out = String::with_capacity(open.len() + 16 * counters.len());
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match meta {
            Some(p) => {
                let rest = &line[p.len()..];
                let name = rest.split(' ').next().unwrap_or("");
                out.push_str(p);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push_str(&rest[name.len()..]);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `view` as exposition text.
pub fn encode(view: &View) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ViewCollector(view.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail; a collector's error would be ours, and is not
    // returned by any of the encoders used below on a String.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct ViewCollector(View);

/// A family of one metric type, written sample by sample.
fn family<'a>(
    enc: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    enc.encode_descriptor(name, help, None, kind)
}

impl Collector for ViewCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = &self.0;
        {
            let mut f = family(
                &mut enc,
                "swarm_tasks",
                "Tasks ended, by kind and outcome.",
                MetricType::Counter,
            )?;
            for (kind, k) in &v.tasks_by_kind {
                for (outcome, n) in [("completed", k.completed), ("failed", k.failed)] {
                    let labels = [("kind", kind.to_string()), ("outcome", outcome.to_string())];
                    ConstCounter::new(n).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut f = family(
                &mut enc,
                "swarm_task_run_seconds",
                "Run time of tasks' last attempts, from dispatch to end, by kind.",
                MetricType::Histogram,
            )?;
            for (kind, k) in &v.tasks_by_kind {
                // Per bucket, not cumulative: the encoder sums them as it writes.
                let buckets: Vec<(f64, u64)> = k
                    .run_time_buckets
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| (RUN_TIME_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), n))
                    .collect();
                let labels = [("kind", kind.to_string())];
                f.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    k.run_time_sum_ns as f64 / 1e9,
                    k.runs(),
                    &buckets,
                    None,
                )?;
            }
        }
        {
            let mut f = family(
                &mut enc,
                "swarm_documents",
                "Documents finished, by status.",
                MetricType::Counter,
            )?;
            for (status, n) in [("ok", v.documents_ok), ("failed", v.documents_failed)] {
                ConstCounter::new(n).encode(f.encode_family(&[("status", status)])?)?;
            }
        }
        {
            let mut f = family(
                &mut enc,
                "swarm_agent_deaths",
                "Agent deaths, by cause.",
                MetricType::Counter,
            )?;
            for (cause, n) in &v.deaths {
                ConstCounter::new(*n).encode(f.encode_family(&[("cause", cause.as_str())])?)?;
            }
        }
        {
            let mut f = family(
                &mut enc,
                "swarm_agents",
                "Agent slots, by the supervisor's state of them.",
                MetricType::Gauge,
            )?;
            for (state, n) in v.agents_by_phase() {
                ConstGauge::new(n as i64).encode(f.encode_family(&[("state", state)])?)?;
            }
        }
        if !v.jobs.is_empty() {
            let mut f = family(
                &mut enc,
                "swarm_jobs",
                "Jobs of swarm serve, by state.",
                MetricType::Gauge,
            )?;
            for (state, n) in &v.jobs {
                ConstGauge::new(*n as i64)
                    .encode(f.encode_family(&[("state", state.as_str())])?)?;
            }
        }
        let counters: [(&str, &str, u64); 3] = [
            ("swarm_pages", "Pages extracted.", v.pages),
            (
                "swarm_agent_restarts",
                "Agents started to replace dead ones.",
                v.agent_restarts,
            ),
            (
                "swarm_tasks_retried",
                "Task attempts requeued after an agent died.",
                v.tasks_retried,
            ),
        ];
        for (name, help, n) in counters {
            ConstCounter::new(n).encode(family(&mut enc, name, help, MetricType::Counter)?)?;
        }
        ConstCounter::new(v.supervisor_cpu_seconds).encode(family(
            &mut enc,
            "swarm_supervisor_cpu_seconds",
            "CPU seconds of the supervisor's process, user and system.",
            MetricType::Counter,
        )?)?;
        let gauges: [(&str, &str, i64); 5] = [
            (
                "swarm_queue_depth",
                "Tasks waiting for an agent.",
                v.queue_depth as i64,
            ),
            (
                "swarm_tasks_in_flight",
                "Tasks on agents.",
                v.in_flight as i64,
            ),
            (
                "swarm_slab_buffers",
                "Page buffers of the supervisor's pool.",
                v.slab_buffers as i64,
            ),
            (
                "swarm_slab_buffers_in_use",
                "Page buffers of the supervisor's pool in use.",
                v.slab_in_use as i64,
            ),
            (
                "swarm_supervisor_resident_bytes",
                "Resident memory of the supervisor's process.",
                (v.supervisor_rss_kib * 1024) as i64,
            ),
        ];
        for (name, help, n) in gauges {
            ConstGauge::new(n).encode(family(&mut enc, name, help, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::KindCounters;

    #[test]
    fn a_view_is_encoded_with_its_counts() {
        let mut k = KindCounters {
            completed: 3,
            failed: 1,
            ..KindCounters::default()
        };
        k.run_time_buckets[0] = 2;
        k.run_time_buckets[RUN_TIME_BOUNDS.len()] = 1;
        k.run_time_sum_ns = 31_000_000_000;
        let v = View {
            pid: 1,
            command: "run".into(),
            uptime_s: 1.0,
            documents_ok: 5,
            documents_failed: 2,
            pages: 40,
            queue_depth: 7,
            in_flight: 2,
            agents: Vec::new(),
            deaths: [("oom".to_string(), 4)].into(),
            agent_restarts: 4,
            tasks_retried: 1,
            tasks_by_kind: [(3, k)].into(),
            slab_buffers: 256,
            slab_in_use: 9,
            supervisor_cpu_seconds: 0.5,
            supervisor_rss_kib: 2,
            throughput: Vec::new(),
            jobs: Default::default(),
        };
        let text = encode(&v);
        for line in [
            "swarm_tasks_total{kind=\"3\",outcome=\"completed\"} 3",
            "swarm_tasks_total{kind=\"3\",outcome=\"failed\"} 1",
            "swarm_task_run_seconds_bucket{le=\"0.0001\",kind=\"3\"} 2",
            "swarm_task_run_seconds_bucket{le=\"+Inf\",kind=\"3\"} 3",
            "swarm_task_run_seconds_count{kind=\"3\"} 3",
            "swarm_documents_total{status=\"failed\"} 2",
            "swarm_agent_deaths_total{cause=\"oom\"} 4",
            "swarm_pages_total 40",
            "swarm_queue_depth 7",
            "swarm_slab_buffers_in_use 9",
            "swarm_supervisor_resident_bytes 2048",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        let classic = to_classic(&text);
        for line in [
            "# HELP swarm_tasks_total Tasks ended, by kind and outcome.",
            "# TYPE swarm_tasks_total counter",
            "# TYPE swarm_task_run_seconds histogram",
            "# TYPE swarm_queue_depth gauge",
            "swarm_tasks_total{kind=\"3\",outcome=\"failed\"} 1",
        ] {
            assert!(classic.contains(line), "{line} not in\n{classic}");
        }
        assert!(!classic.contains("# EOF"));
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            classic.lines().filter(|l| !l.starts_with('#')).count()
        );
    }
}
