//! The node's share of the cluster's presence work: claiming due leave timers and announcing them
//! (a claim not settled within its lease, because its claimer died or was refused, is claimed
//! again), taking over the users of nodes that stopped heartbeating, and registering this node's
//! sockets again when the store forgot them.

use std::{sync::Arc, time::Duration};

use socketio_cluster::presence::PresenceStore;
use tokio::{task::JoinHandle, time::MissedTickBehavior};

use crate::chat::Chat;

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
            chat.announce_departures().await;
        }
    })
}

async fn reap(chat: &Chat, grace: Duration) {
    match chat.presence.reap(chat.config.node_timeout(), grace).await {
        Ok(reap) => {
            if !reap.taken_over.is_empty() {
                tracing::warn!(
                    nodes = ?reap.taken_over,
                    "took over the users of dead nodes: they get leave timers"
                );
            }
            if reap.forgotten {
                chat.register_again().await;
            }
        }
        Err(err) => tracing::error!(%err, "presence heartbeat failed"),
    }
}
