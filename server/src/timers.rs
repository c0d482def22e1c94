//! The node's periodic work: its share of the cluster's presence work (claiming due leave timers
//! and announcing them: a claim not settled within its lease, because its claimer died or was
//! refused, is claimed again; taking over the users of nodes that stopped heartbeating;
//! registering this node's sockets again when the store forgot them), and releasing empty
//! namespaces (see `namespaces`).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use socketio_cluster::presence::PresenceStore;
use socketioxide::SocketIo;
use tokio::{task::JoinHandle, time::MissedTickBehavior};

use crate::{
    backend::Backend,
    chat::{Adapter, Chat},
    namespaces::shown,
};

/// How often the namespace sweeper looks. A namespace that never admitted a socket is released
/// once two sweeps in a row found it empty: its first client may still be between socketioxide
/// building the namespace and `authenticate` marking it connecting (`namespaces::Connecting`),
/// a gap that lasts longer than a moment only on a busy machine.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub fn spawn<B: Backend>(chat: Arc<Chat<B>>, io: SocketIo<Adapter<B>>) -> JoinHandle<()> {
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
                reap(&chat, &io, grace).await;
            }
            chat.announce_departures().await;
        }
    })
}

async fn reap<B: Backend>(chat: &Chat<B>, io: &SocketIo<Adapter<B>>, grace: Duration) {
    match chat.presence.reap(chat.config.node_timeout(), grace).await {
        Ok(reap) => {
            if !reap.taken_over.is_empty() {
                tracing::warn!(
                    nodes = ?reap.taken_over,
                    "took over the users of dead nodes: they get leave timers"
                );
            }
            if reap.forgotten {
                chat.register_again(io).await;
            }
        }
        Err(err) => tracing::error!(%err, "presence heartbeat failed"),
    }
}

/// Releases empty dynamic namespaces until aborted.
pub fn spawn_sweeper<B: Backend>(io: SocketIo<Adapter<B>>, chat: Arc<Chat<B>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut empty_since: HashMap<String, Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(SWEEP_EVERY);
        loop {
            ticker.tick().await;
            sweep(&io, &chat, &mut empty_since);
        }
    })
}

fn sweep<B: Backend>(
    io: &SocketIo<Adapter<B>>,
    chat: &Chat<B>,
    empty_since: &mut HashMap<String, Instant>,
) {
    let now = Instant::now();
    let mut seen = HashMap::new();
    for ns in io.nsps() {
        let nsp = ns.ns_path().to_string();
        if nsp == "/"
            || chat.config.admin_ui.serves(&nsp)
            || !ns.sockets().is_empty()
            || chat.connecting.any(&nsp)
        {
            continue;
        }
        let since = *empty_since.get(&nsp).unwrap_or(&now);
        let keep_for = if chat.cluster.in_cluster(&nsp) {
            chat.config.namespace_idle()
        } else {
            SWEEP_EVERY
        };
        if now.duration_since(since) >= keep_for {
            tracing::debug!(nsp = %shown(&nsp), "releasing an empty namespace");
            chat.metrics.namespaces_released.inc();
            io.delete_ns(&nsp);
        } else {
            seen.insert(nsp, since);
        }
    }
    *empty_since = seen;
}
