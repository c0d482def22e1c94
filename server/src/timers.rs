//! The node's share of the cluster's presence work: claiming due leave timers (each is claimed by
//! exactly one node) and taking over the users of nodes that stopped heartbeating.

use std::{sync::Arc, time::Duration};

use socketio_cluster::presence::PresenceStore;
use tokio::{task::JoinHandle, time::MissedTickBehavior};

use crate::{chat::Chat, protocol::NoticeKind};

/// Timers claimed per tick; more wait for the next tick.
const CLAIM_BATCH: usize = 500;

pub fn spawn(chat: Arc<Chat>) -> JoinHandle<()> {
    let grace = chat.config.leave_grace();
    let tick = (grace / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
    let reap_every = (chat.config.node_timeout() / 4).max(tick);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut since_reap = reap_every;
        loop {
            ticker.tick().await;
            since_reap += tick;
            if since_reap >= reap_every {
                since_reap = Duration::ZERO;
                reap(&chat, grace).await;
            }
            announce_departures(&chat).await;
        }
    })
}

async fn reap(chat: &Chat, grace: Duration) {
    match chat.presence.reap(chat.config.node_timeout(), grace).await {
        Ok(nodes) if !nodes.is_empty() => {
            tracing::warn!(
                ?nodes,
                "took over the users of dead nodes: they get leave timers"
            )
        }
        Ok(_) => {}
        Err(err) => tracing::error!(%err, "presence heartbeat failed"),
    }
}

async fn announce_departures(chat: &Chat) {
    let departures = match chat.presence.claim_due(CLAIM_BATCH).await {
        Ok(departures) => departures,
        Err(err) => return tracing::error!(%err, "could not claim leave timers"),
    };
    for d in departures {
        tracing::debug!(nsp = %d.nsp, room = %d.room, user = %d.user.id, "leave timer fired");
        if let Err(err) = chat
            .announce(&d.nsp, &d.room, NoticeKind::Leave, &d.user, None)
            .await
        {
            tracing::error!(%err, room = %d.room, user = %d.user.id, "could not announce a departure");
        }
    }
}
