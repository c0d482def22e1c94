//! Cluster requests: with every client connected, one client asks `count` (fetchSockets over
//! the cluster) and then `rooms` (all rooms) over and over, one request at a time; each round
//! trip is a latency sample. Every `count` answer must be the number of clients.

use std::time::Instant;

use serde_json::{Value, json};

use super::{Ctx, connect_all};
use crate::{
    cli::Impl,
    conn::{self, Conn},
    deploy::Deployment,
    report::{Run, Step},
    stats::Summary,
};

/// Requests before measuring: the first ones pay for lazy setup (subscriptions, allocations).
const WARM_UP: usize = 5;

/// Rooms the clients are spread over, so `rooms` has something to gather.
const GROUPS: usize = 100;

pub async fn run(ctx: &mut Ctx, imp: Impl, nodes: usize, run: &mut Run) -> anyhow::Result<()> {
    let mut deployment = Deployment::start(&mut ctx.env, imp, nodes).await?;
    let clients = ctx.plan.request_clients.max(1);
    let auths = (0..clients)
        .map(|i| json!({ "rooms": [format!("g{}", i % GROUPS)], "i": i }).to_string())
        .collect();
    let shared = conn::Shared::new(1);
    let (clients, _) = connect_all(&deployment, auths, &shared, ctx.plan.concurrency).await?;
    let asker = &clients[0];
    for event in ["count", "rooms"] {
        for _ in 0..WARM_UP {
            answer(asker, event, clients.len()).await?;
        }
        let before = deployment.snapshot(&ctx.env.redis)?;
        let started = Instant::now();
        let mut rtts = Vec::with_capacity(ctx.plan.requests);
        for _ in 0..ctx.plan.requests {
            rtts.push(answer(asker, event, clients.len()).await?);
        }
        let secs = started.elapsed().as_secs_f64();
        let after = deployment.snapshot(&ctx.env.redis)?;
        deployment.check_alive()?;
        let latency = Summary::of_values(&rtts);
        eprintln!(
            "  {event:>6}, {nodes} nodes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latency.p50_ms, latency.p99_ms, latency.max_ms
        );
        run.steps.push(Step::requests(
            event,
            rtts.len(),
            secs,
            latency,
            after.since(&before),
        ));
    }
    Ok(())
}

/// Asks once; returns the round trip in microseconds. A `count` must see every client.
async fn answer(asker: &Conn, event: &str, clients: usize) -> anyhow::Result<u64> {
    let reply = asker.request(event, None).await?;
    let args: Value = serde_json::from_slice(&reply.args)?;
    let Some(n) = args[0].as_u64() else {
        anyhow::bail!("{event} failed: {args}");
    };
    if event == "count" && n != clients as u64 {
        anyhow::bail!("count answered {n}, but {clients} clients are connected");
    }
    Ok(reply.rtt.as_micros() as u64)
}
