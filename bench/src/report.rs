//! Results: every step as measured (for `--json`), and markdown tables of medians over rounds,
//! with the ratios of our adapter to each baseline.

use std::{collections::BTreeMap, fmt::Write};

use serde::Serialize;

use crate::{
    cli::Scenario,
    deploy::ProcDelta,
    stats::{Losses, Summary},
};

/// One scenario run on one implementation (one round, one node count).
#[derive(Debug, Serialize)]
pub struct Run {
    pub scenario: Scenario,
    pub implementation: String,
    pub round: u32,
    pub nodes: usize,
    pub steps: Vec<Step>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// One measured step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Step {
    pub label: String,
    /// Offered messages (or requests, or connections) per second.
    pub rate: f64,
    /// The measured window.
    pub secs: f64,
    pub sent: u64,
    pub sent_per_s: f64,
    pub delivered_per_s: f64,
    pub losses: Losses,
    pub latency: Summary,
    pub usage: Vec<ProcDelta>,
    /// What each node's counters (drops, send errors, warnings) grew by.
    pub server: BTreeMap<String, BTreeMap<String, f64>>,
    /// Scenario-specific figures (connections per second, KiB per connection…).
    pub extra: BTreeMap<String, f64>,
    /// No loss, no duplicate, no failed ack, p99 within the limit.
    pub passed: bool,
}

impl Step {
    /// A step of `count` sequential request round trips (acks) over `secs`.
    pub fn requests(
        label: &str,
        count: usize,
        secs: f64,
        latency: Summary,
        usage: Vec<ProcDelta>,
    ) -> Self {
        Self {
            label: label.to_string(),
            rate: count as f64 / secs,
            secs,
            sent: count as u64,
            sent_per_s: count as f64 / secs,
            latency,
            usage,
            passed: true,
            ..Self::default()
        }
    }

    /// CPU seconds of the server nodes together (not Redis, not the generator).
    fn server_cpu(&self) -> f64 {
        self.usage
            .iter()
            .filter(|u| u.name != "redis" && u.name != "bench")
            .fold(0.0, |sum, u| sum + u.cpu_s)
    }

    fn cpu_of(&self, name: &str) -> f64 {
        self.usage
            .iter()
            .filter(|u| u.name == name)
            .fold(0.0, |sum, u| sum + u.cpu_s)
    }

    /// Resident memory of the server nodes after the step, MiB.
    fn server_rss_mib(&self) -> f64 {
        self.usage
            .iter()
            .filter(|u| u.name != "redis" && u.name != "bench")
            .fold(0.0, |sum, u| sum + u.rss_kib_after as f64 / 1024.0)
    }

    /// What the servers said they dropped (see `bench-app`'s `stats`).
    fn server_drops(&self) -> f64 {
        self.server
            .values()
            .filter_map(|counters| counters.get("dropped"))
            .fold(0.0, |sum, v| sum + v)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn num(v: f64) -> String {
    match v {
        v if v.is_nan() => "–".into(),
        0.0 => "0".into(),
        v if v.fract() == 0.0 => format!("{v:.0}"),
        v if v.abs() >= 100.0 => format!("{v:.0}"),
        v if v.abs() >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

fn ratio(ours: f64, theirs: f64) -> String {
    let r = ours / theirs;
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "–".into()
    }
}

/// Implementations in the order they first ran.
fn implementations(runs: &[&Run]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for run in runs {
        if !names.contains(&run.implementation) {
            names.push(run.implementation.clone());
        }
    }
    names
}

/// Every step's medians over rounds, per scenario.
pub fn details(runs: &[Run]) -> String {
    let mut out = String::new();
    let scenarios: Vec<Scenario> = {
        let mut s: Vec<Scenario> = runs.iter().map(|r| r.scenario).collect();
        s.dedup();
        s
    };
    for scenario in scenarios {
        let runs: Vec<&Run> = runs.iter().filter(|r| r.scenario == scenario).collect();
        let _ = writeln!(out, "\n### {scenario}: medians over rounds\n");
        out.push_str(
            "| impl | nodes | step | rounds ok | msgs/s | deliveries/s | refused | lost | lost while connected (max) | dup | closed | p50 ms | p95 ms | p99 ms | max ms | server CPU s | redis CPU s | bench CPU s | server RSS MiB | server drops | extra |\n",
        );
        out.push_str(
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for implementation in implementations(&runs) {
            let mine: Vec<&&Run> = runs
                .iter()
                .filter(|r| r.implementation == implementation)
                .collect();
            let mut keys: Vec<(usize, String)> = Vec::new();
            for run in &mine {
                for step in &run.steps {
                    let key = (run.nodes, step.label.clone());
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
            for (nodes, label) in keys {
                let steps: Vec<&Step> = mine
                    .iter()
                    .filter(|r| r.nodes == nodes)
                    .flat_map(|r| r.steps.iter().filter(|s| s.label == label))
                    .collect();
                let m = |f: fn(&Step) -> f64| median(steps.iter().map(|s| f(s)).collect());
                let mut extras: Vec<String> = Vec::new();
                let names: Vec<&String> = steps.iter().flat_map(|s| s.extra.keys()).collect();
                for name in names {
                    let line = format!(
                        "{name}={}",
                        num(median(
                            steps
                                .iter()
                                .filter_map(|s| s.extra.get(name).copied())
                                .collect()
                        ))
                    );
                    if !extras.contains(&line) {
                        extras.push(line);
                    }
                }
                let _ = writeln!(
                    out,
                    "| {implementation} | {nodes} | {label} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    steps.iter().filter(|s| s.passed).count(),
                    steps.len(),
                    num(m(|s| s.sent_per_s)),
                    num(m(|s| s.delivered_per_s)),
                    num(m(|s| s.losses.refused as f64)),
                    num(m(|s| s.losses.lost as f64)),
                    steps.iter().map(|s| s.losses.lost_open).max().unwrap_or(0),
                    num(m(|s| s.losses.duplicates as f64)),
                    num(m(|s| s.losses.closed as f64)),
                    num(m(|s| s.latency.p50_ms)),
                    num(m(|s| s.latency.p95_ms)),
                    num(m(|s| s.latency.p99_ms)),
                    num(m(|s| s.latency.max_ms)),
                    num(m(Step::server_cpu)),
                    num(m(|s| s.cpu_of("redis"))),
                    num(m(|s| s.cpu_of("bench"))),
                    num(m(Step::server_rss_mib)),
                    num(m(Step::server_drops)),
                    extras.join(" "),
                );
            }
        }
        let failed: Vec<String> = runs
            .iter()
            .filter_map(|r| {
                let error = r.error.as_ref()?;
                Some(format!(
                    "- {} round {} ({} nodes): {error}",
                    r.implementation, r.round, r.nodes
                ))
            })
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nErrors:\n{}", failed.join("\n"));
        }
    }
    out
}

/// A headline figure of a run; `higher` tells which way is better.
struct Headline {
    name: String,
    value: f64,
    higher: bool,
}

fn headlines(run: &Run, max_p99_ms: f64) -> Vec<Headline> {
    let best = |f: fn(&Step) -> f64| {
        run.steps
            .iter()
            .filter(|s| s.passed && s.label != "join")
            .map(f)
            .fold(0.0, f64::max)
    };
    let step = |label: &str| run.steps.iter().find(|s| s.label == label);
    let nodes = run.nodes;
    let h = |name: String, value: f64, higher: bool| Headline {
        name,
        value,
        higher,
    };
    match run.scenario {
        Scenario::Fanout => vec![h(
            format!("fanout: max deliveries/s, p99 ≤ {max_p99_ms} ms and no loss"),
            best(|s| s.delivered_per_s),
            true,
        )],
        Scenario::Rooms => vec![h(
            format!("rooms: max msgs/s, p99 ≤ {max_p99_ms} ms and no loss"),
            best(|s| s.sent_per_s),
            true,
        )],
        Scenario::Requests => ["count", "rooms"]
            .iter()
            .filter_map(|label| step(label).map(|s| (label, s)))
            .flat_map(|(label, s)| {
                [
                    h(
                        format!("{label} p50 ms, {nodes} nodes"),
                        s.latency.p50_ms,
                        false,
                    ),
                    h(
                        format!("{label} p99 ms, {nodes} nodes"),
                        s.latency.p99_ms,
                        false,
                    ),
                ]
            })
            .collect(),
        Scenario::Idle => step("idle")
            .map(|s| {
                vec![
                    h(
                        "idle: KiB per connection (server)".into(),
                        s.extra.get("kib_per_conn").copied().unwrap_or(f64::NAN),
                        false,
                    ),
                    h(
                        "idle: connections/s".into(),
                        s.extra.get("connects_per_s").copied().unwrap_or(f64::NAN),
                        true,
                    ),
                ]
            })
            .unwrap_or_default(),
        Scenario::Chat => {
            let mut out = vec![h(
                format!("chat: max msgs/s, p99 ≤ {max_p99_ms} ms and no loss"),
                best(|s| s.sent_per_s),
                true,
            )];
            if let Some(join) = step("join") {
                out.push(h("chat: join p99 ms".into(), join.latency.p99_ms, false));
            }
            out
        }
        Scenario::Scaling => run
            .steps
            .iter()
            .flat_map(|s| {
                let figure = |key: &str| s.extra.get(key).copied().unwrap_or(f64::NAN);
                let mode = &s.label;
                vec![
                    h(
                        format!("scaling {mode}, {nodes} nodes: read ÷ needed"),
                        figure("ratio"),
                        false,
                    ),
                    h(
                        format!("scaling {mode}, {nodes} nodes: read ÷ needed, from others"),
                        figure("ratio_others"),
                        false,
                    ),
                    h(
                        format!("scaling {mode}, {nodes} nodes: Redis CPU µs per delivery"),
                        figure("redis_us_per_delivery"),
                        false,
                    ),
                    h(
                        format!(
                            "scaling {mode}, {nodes} nodes: Redis CPU µs per delivery, idle CPU subtracted"
                        ),
                        figure("redis_net_us_per_delivery"),
                        false,
                    ),
                    h(
                        format!("scaling {mode}, {nodes} nodes: node CPU µs per delivery"),
                        figure("node_us_per_delivery"),
                        false,
                    ),
                ]
            })
            .collect(),
        Scenario::Waves => run
            .steps
            .iter()
            .flat_map(|s| {
                let figure = |key: &str| s.extra.get(key).copied().unwrap_or(f64::NAN);
                let wave = &s.label;
                vec![
                    h(
                        format!("waves: {wave}, peak KiB per connection"),
                        figure("kib_per_conn"),
                        false,
                    ),
                    h(
                        format!("waves: {wave}, RSS after ÷ baseline"),
                        figure("growth"),
                        false,
                    ),
                    h(
                        format!("waves: {wave}, seconds until back"),
                        figure("settle_secs"),
                        false,
                    ),
                ]
            })
            .collect(),
        Scenario::Storage => run
            .steps
            .iter()
            .flat_map(|s| {
                let figure = |key: &str| s.extra.get(key).copied().unwrap_or(f64::NAN);
                vec![
                    h("storage: JSON bytes per message".into(), figure("json_bytes"), false),
                    h("storage: Redis bytes per message".into(), figure("redis_bytes"), false),
                    h("storage: Redis bytes ÷ JSON bytes".into(), figure("ratio"), false),
                    h("storage: Redis CPU µs per message".into(), figure("redis_cpu_us"), false),
                    h("storage: the post command's µs".into(), figure("post_command_us"), false),
                ]
            })
            .collect(),
        Scenario::All => Vec::new(),
    }
}

/// One line per headline figure: the median per implementation over rounds, and our adapter's
/// ratio to each other implementation.
pub fn summary(runs: &[Run], max_p99_ms: f64) -> String {
    let all: Vec<&Run> = runs.iter().collect();
    let impls = implementations(&all);
    let ours = "cluster";
    let others: Vec<&String> = impls
        .iter()
        .filter(|i| impls.iter().any(|i| i == ours) && *i != ours && *i != "chat-server")
        .collect();
    let mut out = String::from("\n### Summary: medians over rounds\n\n| figure |");
    for i in &impls {
        let _ = write!(out, " {i} |");
    }
    for o in &others {
        let _ = write!(out, " cluster ÷ {o} |");
    }
    out.push_str("\n| --- |");
    out.push_str(&" --- |".repeat(impls.len() + others.len()));
    out.push('\n');
    let mut figures: Vec<(String, bool)> = Vec::new();
    let mut values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for run in runs {
        for h in headlines(run, max_p99_ms) {
            if !figures.iter().any(|(name, _)| *name == h.name) {
                figures.push((h.name.clone(), h.higher));
            }
            values
                .entry((h.name, run.implementation.clone()))
                .or_default()
                .push(h.value);
        }
    }
    for (figure, higher) in figures {
        let value = |i: &str| {
            median(
                values
                    .get(&(figure.clone(), i.to_string()))
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        let arrow = if higher { "↑" } else { "↓" };
        let _ = write!(out, "| {figure} {arrow} |");
        for i in &impls {
            let _ = write!(out, " {} |", num(value(i)));
        }
        for o in &others {
            let _ = write!(out, " {} |", ratio(value(ours), value(o)));
        }
        out.push('\n');
    }
    out.push_str(
        "\n↑ higher is better, ↓ lower is better; a ratio is ours divided by the baseline.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    fn run(implementation: &str, rates: &[(f64, bool)]) -> Run {
        Run {
            scenario: Scenario::Fanout,
            implementation: implementation.into(),
            round: 1,
            nodes: 2,
            steps: rates
                .iter()
                .map(|&(rate, passed)| Step {
                    label: format!("{rate} msg/s"),
                    delivered_per_s: rate * 10.0,
                    passed,
                    ..Step::default()
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn the_summary_takes_the_best_passing_step_and_ratios() {
        let runs = [
            run("cluster", &[(100.0, true), (200.0, true), (400.0, false)]),
            run("node", &[(100.0, true), (200.0, false)]),
        ];
        let table = summary(&runs, 250.0);
        assert!(table.contains("| 2000 | 1000 | 2.00 |"), "{table}");
        assert!(details(&runs).contains("| cluster | 2 | 400 msg/s | 0/1 |"));
    }
}
