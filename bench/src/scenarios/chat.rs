//! The real chat server (our adapter, presence and history in Redis): every user joins a room
//! with the chat's `join` (the first step measures those round trips), then one user per room
//! sends `message`s with acks, which the server stores in the room's history and broadcasts to
//! the room, the sender included. The rate steps up like the other traffic scenarios.

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use super::{Ctx, traffic::Traffic};
use crate::{
    cli::AdminUi,
    conn::{self, Conn, Spec},
    deploy::{ADMIN_UI_LOGIN, Deployment},
    report::{Run, Step},
    sio::Emit,
    stats::Summary,
};

pub async fn run(ctx: &mut Ctx, nodes: usize, run: &mut Run) -> anyhow::Result<()> {
    let admin_ui = ctx.plan.chat_admin_ui;
    let mut deployment = Deployment::chat(&mut ctx.env, nodes, admin_ui != AdminUi::Off).await?;
    let (rooms, size) = (ctx.plan.chat_rooms, ctx.plan.chat_room_size);
    let room_of = |client: usize| format!("c{}", client / size);
    let auths = (0..rooms * size)
        .map(|i| json!({ "userId": format!("u{i}"), "name": format!("user {i}") }).to_string())
        .collect();
    let baseline = deployment.snapshot(&ctx.env.redis)?;
    let connecting = Instant::now();
    let mut traffic = Traffic::open(ctx, &deployment, auths, false).await?;
    let connects_per_s = traffic.clients.len() as f64 / connecting.elapsed().as_secs_f64();

    // An operator watching the first node: every node's statistics reach it every 2 s.
    let _watching = match admin_ui {
        AdminUi::Watched => Some(
            Conn::open(
                Spec {
                    addr: deployment.addr_for(0),
                    auth: format!("/admin,{ADMIN_UI_LOGIN}"),
                    index: u32::MAX,
                },
                conn::Shared::new(1),
            )
            .await?,
        ),
        _ => None,
    };

    let before = deployment.snapshot(&ctx.env.redis)?;
    let started = Instant::now();
    let joins: Vec<_> = stream::iter(traffic.clients.iter().enumerate())
        .map(|(i, client)| client.request("join", Some(json!({ "room": room_of(i) }).to_string())))
        .buffered(ctx.plan.concurrency)
        .try_collect()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let after = deployment.snapshot(&ctx.env.redis)?;
    let refused = joins
        .iter()
        .filter(|r| memchr::memmem::find(&r.args, b"\"ok\":true").is_none())
        .count();
    if refused > 0 {
        anyhow::bail!("{refused} joins were refused");
    }
    let rtts: Vec<u64> = joins.iter().map(|r| r.rtt.as_micros() as u64).collect();
    let latency = Summary::of_values(&rtts);
    // What each node holds per client once every client has joined: sessions, chat state,
    // presence, room membership.
    let per_node = joins.len() as f64 / nodes as f64;
    let kib_per_client = deployment
        .nodes
        .iter()
        .map(|n| {
            let grew = after.rss_kib(&n.name).unwrap_or(0) as f64
                - baseline.rss_kib(&n.name).unwrap_or(0) as f64;
            grew / per_node
        })
        .sum::<f64>()
        / nodes as f64;
    eprintln!(
        "  {} clients connected at {connects_per_s:.0}/s; {} joins: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms; {kib_per_client:.1} KiB per joined client",
        traffic.clients.len(),
        joins.len(),
        joins.len() as f64 / secs,
        latency.p50_ms,
        latency.p99_ms
    );
    let mut step = Step::requests("join", joins.len(), secs, latency, after.since(&before));
    step.extra = [
        ("connects_per_s".to_string(), connects_per_s),
        ("kib_per_client".to_string(), kib_per_client),
    ]
    .into();
    run.steps.push(step);

    let mut senders = Vec::new();
    for room in 0..rooms {
        // Alternate the sender's position, so senders sit on every node.
        let sender = room * size + (room % nodes.max(1)).min(size - 1);
        for member in room * size..(room + 1) * size {
            traffic.expect(member, [sender]);
        }
        senders.push((
            sender,
            Emit::Chat {
                room: room_of(sender),
            },
        ));
    }
    traffic.send_from(senders);
    let rates = ctx.plan.chat_rates.clone();
    let first = rates.first().copied().unwrap_or(10.0);
    traffic.warm_up(ctx, &mut deployment, first).await?;
    traffic.climb(ctx, &mut deployment, &rates, run).await
}
