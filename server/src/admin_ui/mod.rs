//! The Socket.IO Admin UI (`@socket.io/admin-ui` 0.5.1) for the whole cluster: its protocol on
//! `ADMIN_UI_NAMESPACE` and its page at `ADMIN_UI_PATH`, on with `ADMIN_UI_USERNAME` and
//! `ADMIN_UI_PASSWORD_HASH`.
//!
//! - [`login`]: bcrypt login and rationed tries; [`sessions`]: the sessions it opens.
//! - [`namespace`]: what a UI is told when it connects, and the actions it sends.
//! - [`monitor`]: the chat's hooks (counts, development-mode notifications).
//! - [`stats`]: `server_stats`, every node's, every 2 s.
//! - [`files`]: the UI's page.
//!
//! Every node broadcasts its statistics and notifications to the admin namespace through the
//! cluster, so a UI connected to any node sees every node, as with Node's Redis adapter.

pub mod files;
pub mod login;
pub mod monitor;
pub mod namespace;
pub mod sessions;
pub mod settings;
pub mod stats;

use std::{sync::Arc, time::Duration};

use socketio_cluster::Target;
use socketioxide::SocketIo;
use tokio::task::JoinHandle;

use self::{sessions::Sessions, settings::AdminUiSettings};
use crate::{
    backend::Backend,
    chat::{Adapter, Chat},
    connections::gate::Gate,
};

/// How often each node sends its statistics, as Node's `serverStatsInterval` default.
const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// An enabled Admin UI: what its handlers need (socketioxide state).
pub struct AdminUi {
    pub namespace: String,
    pub readonly: bool,
    pub development: bool,
    login: login::Login,
    gate: Arc<Gate>,
    identity: stats::Identity,
}

impl AdminUi {
    /// The Admin UI of a node named `node`, if its settings turn it on.
    pub fn new(
        settings: &AdminUiSettings,
        sessions: Sessions,
        gate: Arc<Gate>,
        node: &str,
    ) -> Option<Arc<Self>> {
        let credentials = settings.credentials()?;
        Some(Arc::new(Self {
            namespace: settings.admin_ui_namespace.clone(),
            readonly: settings.admin_ui_readonly,
            development: settings.development(),
            login: login::Login::new(credentials.username, credentials.password_hash, sessions),
            gate,
            identity: stats::Identity::new(node),
        }))
    }

    /// Serves the namespace, joins it to the cluster and starts sending statistics (and, in
    /// development mode, notifications). The task runs until aborted.
    pub async fn start<B: Backend>(
        self: &Arc<Self>,
        chat: &Arc<Chat<B>>,
        io: &SocketIo<Adapter<B>>,
    ) -> anyhow::Result<JoinHandle<()>> {
        namespace::serve::<B>(io, self).await?;
        chat.cluster.admit(&self.namespace).await?;
        tracing::info!(
            nsp = %self.namespace,
            mode = if self.development { "development" } else { "production" },
            readonly = self.readonly,
            "Admin UI on"
        );
        let notices = chat.monitor.take_notices();
        let (ui, chat, io) = (self.clone(), chat.clone(), io.clone());
        Ok(tokio::spawn(async move {
            tokio::join!(ui.send_stats(&chat, &io), ui.forward(&chat, notices));
        }))
    }

    async fn send_stats<B: Backend>(&self, chat: &Chat<B>, io: &SocketIo<Adapter<B>>) {
        let totals = || {
            stats::Totals::read(
                &chat.monitor.counts,
                &chat.cluster.stats(),
                chat.metrics.bytes_in.get(),
                chat.metrics.bytes_out.get(),
            )
        };
        let mut last = totals();
        let mut ticker = tokio::time::interval(STATS_INTERVAL);
        loop {
            ticker.tick().await;
            let now = totals();
            let aggregated = now.since(&last, stats::this_second());
            last = now;
            let stats = stats::server_stats(&self.identity, io, chat.admission.open(), &aggregated);
            let everyone = Target::all();
            let sent = chat
                .cluster
                .emit(&self.namespace, &everyone, "server_stats", vec![stats]);
            if let Err(err) = sent.await {
                tracing::warn!(%err, "Admin UI: cannot send this node's statistics");
            }
        }
    }

    /// Emits the development-mode notifications to every admin socket of the cluster.
    async fn forward<B: Backend>(
        &self,
        chat: &Chat<B>,
        notices: Option<tokio::sync::mpsc::Receiver<monitor::Notice>>,
    ) {
        let Some(mut notices) = notices else {
            return;
        };
        let everyone = Target::all();
        while let Some(notice) = notices.recv().await {
            for (event, args) in notice.into_events() {
                let sent = chat.cluster.emit(&self.namespace, &everyone, event, args);
                if let Err(err) = sent.await {
                    tracing::debug!(%err, event, "Admin UI: a notification was not sent");
                }
            }
        }
    }
}
