//! Scaling past one Redis: what each node reads from Redis against what its rooms need, classic
//! vs sharded pub/sub, at a fixed message rate, for N nodes.
//!
//! R rooms of 2 clients, room i on nodes i % N and (i + 1) % N (so every node hosts 2R/N rooms
//! and a room always spans 2 nodes); both clients of every room send, at the plan's total rate.
//! Each mode gets fresh nodes (`bench-app --impl cluster`, its pub/sub flags), a warm-up, then:
//!
//! 1. an idle window of the step's length: what each node's `received` and `published` counters
//!    grow by without traffic (heartbeats: about one per node per 2.5 s, its own included);
//! 2. the step: the traffic, the counters read before and after (as every step does).
//!
//! Per node, over the step (the idle growth, scaled to the step's window, subtracted):
//! - *read*: broadcasts it read from Redis, its own echoes included (both modes send a node's
//!   broadcast back to it: classic because it psubscribes everything, sharded because it hosts a
//!   member of the room it broadcasts to; the adapter drops its own on arrival);
//! - *needed*: messages sent to the rooms it hosts, its own included; *needed from others*:
//!   the same without the ones its own clients sent.
//!
//! `ratio` = Σ read ÷ Σ needed (classic ≈ N/2, ideal 1); `ratio_others` = Σ (read − own) ÷
//! Σ needed from others (classic ≈ N − 1, ideal 1). Redis CPU is per delivered message
//! (deliveries to clients), and per message Redis pushed to a subscriber (Σ read).

use std::{collections::BTreeMap, time::Instant};

use serde_json::json;

use super::{Ctx, traffic::Traffic};
use crate::{
    cli::{Impl, PubSubMode},
    deploy::Deployment,
    report::{Run, Step},
    sio::Emit,
};

type Counters = BTreeMap<String, BTreeMap<String, f64>>;

pub async fn run(ctx: &mut Ctx, nodes: usize, run: &mut Run) -> anyhow::Result<()> {
    if nodes < 2 {
        anyhow::bail!("the scaling scenario needs at least 2 nodes");
    }
    for mode in ctx.plan.scaling_modes.clone() {
        let step = measure(ctx, nodes, mode).await?;
        run.steps.push(step);
    }
    Ok(())
}

async fn measure(ctx: &mut Ctx, nodes: usize, mode: PubSubMode) -> anyhow::Result<Step> {
    let flags = mode.app_flags();
    let mut deployment = Deployment::start_with(&mut ctx.env, Impl::Cluster, nodes, &flags).await?;
    let rooms = ctx.plan.scaling_rooms;
    let node_of = |client: usize| (client / 2 + client % 2) % nodes;
    let placed = (0..rooms * 2)
        .map(|c| {
            let auth = json!({ "rooms": [format!("s{}", c / 2)], "i": c });
            (node_of(c), auth.to_string())
        })
        .collect();
    let mut traffic = Traffic::open_placed(ctx, &deployment, placed, true).await?;
    let mut senders = Vec::new();
    for room in 0..rooms {
        let pair = [2 * room, 2 * room + 1];
        traffic.expect(pair[0], pair);
        traffic.expect(pair[1], pair);
        for client in pair {
            let room = format!("s{room}");
            senders.push((client, Emit::Tiny { room }));
        }
    }
    traffic.send_from(senders);
    let rate = ctx.plan.scaling_rate;

    // The idle window: heartbeats only. No warm-up step: `Cluster::join` returns once the room's
    // channel is subscribed, classic nodes psubscribe before they serve, and the window leaves
    // every subscription the step's length to settle anyway (the shared warm-up, capped at
    // 100 msgs/s over 2R senders, would send nothing in its half second).
    let idle_before = traffic.counters().await?;
    let idle_usage_before = deployment.snapshot(&ctx.env.redis)?;
    let idle_started = Instant::now();
    tokio::time::sleep(ctx.plan.duration).await;
    let idle_usage = deployment
        .snapshot(&ctx.env.redis)?
        .since(&idle_usage_before);
    let idle_after = traffic.counters().await?;
    let idle_secs = idle_started.elapsed().as_secs_f64();

    let started = Instant::now();
    let label = format!("{mode}");
    let (mut step, sent) = traffic.step(ctx, &mut deployment, label, rate).await?;
    let window = started.elapsed().as_secs_f64();
    let scale = window / idle_secs;

    let (mut read_sum, mut needed_sum, mut own_sum) = (0.0, 0.0, 0.0);
    let mut extra = BTreeMap::new();
    for (k, node) in deployment.nodes.iter().enumerate() {
        let hosts = |room: usize| room % nodes == k || (room + 1) % nodes == k;
        let needed: u64 = (0..rooms)
            .filter(|&r| hosts(r))
            .map(|r| sent[2 * r] + sent[2 * r + 1])
            .sum();
        let own: u64 = (0..rooms * 2)
            .filter(|&c| node_of(c) == k)
            .map(|c| sent[c])
            .sum();
        let idle_received = delta(&idle_before, &idle_after, &node.name, "adapter.received");
        let idle_published = delta(&idle_before, &idle_after, &node.name, "adapter.published");
        let received = step_growth(&step, &node.name, "adapter.received");
        let published = step_growth(&step, &node.name, "adapter.published");
        let read = received - idle_received * scale;
        let (needed, own) = (needed as f64, own as f64);
        let name = &node.name;
        extra.insert(format!("{name}.read"), read);
        extra.insert(format!("{name}.needed"), needed);
        extra.insert(format!("{name}.own"), own);
        extra.insert(format!("{name}.ratio"), read / needed);
        extra.insert(format!("{name}.idle_received"), idle_received);
        extra.insert(
            format!("{name}.published_minus_idle"),
            published - idle_published * scale,
        );
        read_sum += read;
        needed_sum += needed;
        own_sum += own;
    }
    let delivered = step.losses.delivered as f64;
    let redis_cpu = cpu(&step.usage, |n| n == "redis");
    let node_cpu = cpu(&step.usage, |n| n != "redis" && n != "bench");
    let redis_idle_cpu = cpu(&idle_usage, |n| n == "redis") * scale;
    let node_idle_cpu = cpu(&idle_usage, |n| n != "redis" && n != "bench") * scale;
    let figures = [
        ("ratio", read_sum / needed_sum),
        (
            "ratio_others",
            (read_sum - own_sum) / (needed_sum - own_sum),
        ),
        ("read", read_sum),
        ("needed", needed_sum),
        ("own", own_sum),
        ("delivered", delivered),
        ("window_s", window),
        ("idle_window_s", idle_secs),
        ("redis_cpu_s", redis_cpu),
        ("redis_idle_cpu_s", redis_idle_cpu),
        ("node_cpu_s", node_cpu),
        ("node_idle_cpu_s", node_idle_cpu),
        ("redis_us_per_delivery", redis_cpu / delivered * 1e6),
        ("redis_us_per_read", redis_cpu / read_sum * 1e6),
        (
            "redis_net_us_per_delivery",
            (redis_cpu - redis_idle_cpu) / delivered * 1e6,
        ),
        ("node_us_per_delivery", node_cpu / delivered * 1e6),
    ];
    extra.extend(figures.iter().map(|(k, v)| (k.to_string(), *v)));
    eprintln!(
        "  {mode:>16}: {nodes} nodes, read {read_sum:.0} / needed {needed_sum:.0} = {:.2} (from others: {:.2}); redis {redis_cpu:.2} s CPU ({:.2} µs per delivery), nodes {node_cpu:.2} s",
        read_sum / needed_sum,
        (read_sum - own_sum) / (needed_sum - own_sum),
        redis_cpu / delivered * 1e6,
    );
    step.extra = extra;
    Ok(step)
}

/// What `counter` of `node` grew by between two readings.
fn delta(before: &Counters, after: &Counters, node: &str, counter: &str) -> f64 {
    let read = |c: &Counters| c.get(node).and_then(|n| n.get(counter)).copied();
    read(after).unwrap_or(0.0) - read(before).unwrap_or(0.0)
}

/// What `counter` of `node` grew by over the step (unchanged counters are left out: 0).
fn step_growth(step: &Step, node: &str, counter: &str) -> f64 {
    let grown = step.server.get(node).and_then(|n| n.get(counter));
    grown.copied().unwrap_or(0.0)
}

fn cpu(usage: &[crate::deploy::ProcDelta], which: impl Fn(&str) -> bool) -> f64 {
    usage
        .iter()
        .filter(|u| which(&u.name))
        .map(|u| u.cpu_s)
        .sum()
}
