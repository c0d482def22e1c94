//! Many small rooms: pairs of clients on different nodes (client 2k on one node, 2k + 1 on the
//! next), one of each pair sending, so every message crosses Redis once and is delivered twice.
//! The total rate steps up until a step loses something or its p99 passes the limit.

use serde_json::json;

use super::{Ctx, traffic::Traffic};
use crate::{cli::Impl, deploy::Deployment, report::Run, sio::Emit};

pub async fn run(ctx: &mut Ctx, imp: Impl, nodes: usize, run: &mut Run) -> anyhow::Result<()> {
    let mut deployment = Deployment::start(&mut ctx.env, imp, nodes).await?;
    let rooms = ctx.plan.rooms;
    let auths = (0..rooms * 2)
        .map(|i| json!({ "rooms": [format!("r{}", i / 2)], "i": i }).to_string())
        .collect();
    let mut traffic = Traffic::open(ctx, &deployment, auths, true).await?;
    let mut senders = Vec::new();
    for room in 0..rooms {
        // Alternate which member sends, so both nodes take senders.
        let sender = 2 * room + room % 2;
        traffic.expect(2 * room, [sender]);
        traffic.expect(2 * room + 1, [sender]);
        senders.push((
            sender,
            Emit::Tiny {
                room: format!("r{room}"),
            },
        ));
    }
    traffic.send_from(senders);
    let rates = ctx.plan.room_rates.clone();
    let first = rates.first().copied().unwrap_or(10.0);
    traffic.warm_up(ctx, &mut deployment, first).await?;
    traffic.climb(ctx, &mut deployment, &rates, run).await
}
