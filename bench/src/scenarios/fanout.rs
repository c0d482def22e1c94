//! Fan-out: one room of every client, spread over the nodes; a few of them send, and every
//! message goes to the whole room, the sender included. The rate steps up until a step loses
//! something or its p99 latency passes the limit.

use serde_json::json;

use super::{Ctx, traffic::Traffic};
use crate::{cli::Impl, deploy::Deployment, report::Run, sio::Emit};

const ROOM: &str = "fanout";

pub async fn run(ctx: &mut Ctx, imp: Impl, nodes: usize, run: &mut Run) -> anyhow::Result<()> {
    let mut deployment = Deployment::start(&mut ctx.env, imp, nodes).await?;
    let clients = ctx.plan.fanout_clients;
    let auths = (0..clients)
        .map(|i| json!({ "rooms": [ROOM], "i": i }).to_string())
        .collect();
    let mut traffic = Traffic::open(ctx, &deployment, auths, true).await?;
    // Clients are spread round robin, so the first few senders sit on different nodes.
    let senders = ctx.plan.senders.min(clients);
    for client in 0..clients {
        traffic.expect(client, 0..senders);
    }
    let emit = Emit::Tiny { room: ROOM.into() };
    traffic.send_from((0..senders).map(|s| (s, emit.clone())).collect());
    let rates = ctx.plan.rates.clone();
    let first = rates.first().copied().unwrap_or(10.0);
    traffic.warm_up(ctx, &mut deployment, first).await?;
    traffic.climb(ctx, &mut deployment, &rates, run).await
}
