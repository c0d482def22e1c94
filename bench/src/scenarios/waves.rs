//! Connection storms on the real chat server: `idle_clients` connect and then all leave, three
//! times, as every deploy and every network blip makes them. What a node allocated for a wave
//! must come back: after each wave its resident memory must fall back within 1.5× of what it
//! was before the first, within a minute. Also reports the peak memory per connection.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Ctx, connect_all};
use crate::{
    conn,
    deploy::Deployment,
    report::{Run, Step},
};

/// Waves per run.
const WAVES: usize = 3;
/// Resident memory after a wave may be at most this many times the baseline.
pub const MAX_GROWTH: f64 = 1.5;
/// Time for a node to finish starting before the baseline is read.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(ctx: &mut Ctx, nodes: usize, run: &mut Run) -> anyhow::Result<()> {
    let deployment = Deployment::chat(&mut ctx.env, nodes, false).await?;
    let clients = ctx.plan.idle_clients;
    // The smoke run checks that the scenario works, not a debug build's memory.
    let patience = if ctx.plan.smoke {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(60)
    };
    tokio::time::sleep(SETTLE).await;
    let baseline = rss_kib(&deployment, ctx)?;
    eprintln!("  baseline: {:?} KiB", baseline);
    for wave in 1..=WAVES {
        let shared = conn::Shared::new(1);
        let auths = (0..clients)
            .map(|i| json!({ "userId": format!("w{i}") }).to_string())
            .collect();
        let (conns, took) = connect_all(&deployment, auths, &shared, ctx.plan.concurrency).await?;
        let before = deployment.snapshot(&ctx.env.redis)?;
        let peak = rss_kib(&deployment, ctx)?;
        drop(conns);
        let left = Instant::now();
        let mut after = rss_kib(&deployment, ctx)?;
        while !within(&after, &baseline) && left.elapsed() < patience {
            tokio::time::sleep(Duration::from_millis(500)).await;
            after = rss_kib(&deployment, ctx)?;
        }
        let settled = left.elapsed().as_secs_f64();
        let per_node = clients as f64 / nodes as f64;
        let kib_per_conn = mean(
            peak.iter()
                .zip(&baseline)
                .map(|(p, b)| (*p as f64 - *b as f64) / per_node),
        );
        let growth = mean(
            after
                .iter()
                .zip(&baseline)
                .map(|(a, b)| *a as f64 / *b as f64),
        );
        let passed = ctx.plan.smoke || within(&after, &baseline);
        eprintln!(
            "  wave {wave}: {clients} clients in {:.1} s, peak {peak:?} KiB ({kib_per_conn:.1} KiB per connection), \
             {after:?} KiB {settled:.1} s after they left ({growth:.2}× the baseline){}",
            took.as_secs_f64(),
            if passed { "" } else { ": did not come back" }
        );
        run.steps.push(Step {
            label: format!("wave {wave}"),
            rate: clients as f64,
            secs: took.as_secs_f64(),
            sent: clients as u64,
            sent_per_s: clients as f64 / took.as_secs_f64(),
            usage: deployment.snapshot(&ctx.env.redis)?.since(&before),
            extra: [
                ("kib_per_conn".to_string(), kib_per_conn),
                ("growth".to_string(), growth),
                ("settle_secs".to_string(), settled),
                (
                    "baseline_kib".to_string(),
                    mean(baseline.iter().map(|b| *b as f64)),
                ),
                (
                    "after_kib".to_string(),
                    mean(after.iter().map(|a| *a as f64)),
                ),
            ]
            .into(),
            passed,
            ..Step::default()
        });
        if !passed {
            break;
        }
    }
    Ok(())
}

/// Each node's resident memory, in KiB.
fn rss_kib(deployment: &Deployment, ctx: &Ctx) -> anyhow::Result<Vec<u64>> {
    let snapshot = deployment.snapshot(&ctx.env.redis)?;
    Ok(deployment
        .nodes
        .iter()
        .map(|n| snapshot.rss_kib(&n.name).unwrap_or(0))
        .collect())
}

fn within(rss: &[u64], baseline: &[u64]) -> bool {
    rss.iter()
        .zip(baseline)
        .all(|(r, b)| *r as f64 <= *b as f64 * MAX_GROWTH)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}
