//! Idle connections: how fast the nodes accept clients, and how much memory each connection
//! costs them (resident memory after − before, per client of the node).

use std::time::Duration;

use serde_json::Value;

use super::{Ctx, connect_all};
use crate::{
    cli::Impl,
    conn::{self, Conn, Spec},
    deploy::Deployment,
    report::{Run, Step},
};

/// Time for a node to finish starting before memory is read, and for memory to settle after
/// the clients connected.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(ctx: &mut Ctx, imp: Impl, nodes: usize, run: &mut Run) -> anyhow::Result<()> {
    let mut deployment = Deployment::start(&mut ctx.env, imp, nodes).await?;
    let clients = ctx.plan.idle_clients;
    tokio::time::sleep(SETTLE).await;
    let before = deployment.snapshot(&ctx.env.redis)?;
    let shared = conn::Shared::new(1);
    let auths = vec!["{}".to_string(); clients];
    let (conns, took) = connect_all(&deployment, auths, &shared, ctx.plan.concurrency).await?;
    tokio::time::sleep(SETTLE).await;
    let after = deployment.snapshot(&ctx.env.redis)?;
    deployment.check_alive()?;
    let counter = Conn::open(
        Spec {
            addr: deployment.addr_for(0),
            auth: "{}".into(),
            index: clients as u32,
        },
        shared,
    )
    .await?;
    let reply = counter.request("count", None).await?;
    let counted: Value = serde_json::from_slice(&reply.args)?;
    let expected = conns.len() as u64 + 1;
    if counted[0].as_u64() != Some(expected) {
        anyhow::bail!("count answered {counted}, {expected} clients are connected");
    }
    let usage = after.since(&before);
    let per_node = clients as f64 / nodes as f64;
    let servers: Vec<f64> = usage
        .iter()
        .filter(|u| deployment.nodes.iter().any(|n| n.name == u.name))
        .map(|u| (u.rss_kib_after as f64 - u.rss_kib_before as f64) / per_node)
        .collect();
    let kib_per_conn = servers.iter().sum::<f64>() / servers.len().max(1) as f64;
    let bench = usage.iter().find(|u| u.name == "bench");
    let bench_kib = bench.map_or(0.0, |u| u.rss_kib_after as f64 - u.rss_kib_before as f64);
    let connects_per_s = clients as f64 / took.as_secs_f64();
    eprintln!(
        "  {clients} clients: {connects_per_s:.0} connections/s, {kib_per_conn:.1} KiB per connection"
    );
    run.steps.push(Step {
        label: "idle".into(),
        rate: connects_per_s,
        secs: took.as_secs_f64(),
        sent: clients as u64,
        sent_per_s: connects_per_s,
        usage,
        extra: [
            ("connects_per_s".to_string(), connects_per_s),
            ("kib_per_conn".to_string(), kib_per_conn),
            (
                "bench_kib_per_conn".to_string(),
                bench_kib / clients.max(1) as f64,
            ),
        ]
        .into(),
        passed: true,
        ..Step::default()
    });
    Ok(())
}
