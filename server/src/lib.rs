//! `chat-server`: the chat contract of `shared/PROTOCOL.md` on the `socketio-cluster` adapter.
//!
//! A node serves Socket.IO and HTTP on one port. With `REDIS_URL` it joins the cluster of every
//! node on that Redis: messages, presence, history and admin operations span all nodes. Without
//! it, it is a complete single node with in-memory adapter, presence and history. The browser
//! client built from `web/` is served at `/`.

pub mod admin;
pub mod admin_ui;
pub mod backend;
pub mod chat;
pub mod client_bundle;
pub mod config;
pub mod connections;
pub mod fanout;
pub mod history;
pub mod history_pages;
pub mod identity;
pub mod metrics;
pub mod namespaces;
pub mod operations;
pub mod protocol;
pub mod rate_limit;
mod redis_function;
pub mod request_parts;
pub mod timers;
pub mod web;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, Method, header},
    response::IntoResponse,
};
use socketio_cluster::{Cluster, ClusterConfig, presence::PresenceStore};
use socketioxide::SocketIo;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tower::Service;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use chat::{Adapter, Chat};
pub use config::{Config, Cors};

use crate::{
    admin_ui::AdminUi,
    backend::{Backend, Shared},
    connections::gate::Gate,
};

/// How long a graceful shutdown may take before the node gives up waiting.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);

/// A running node, sharing its state through `B` (see [`backend`]).
pub struct Server<B: Backend> {
    addr: SocketAddr,
    chat: Arc<Chat<B>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl<B: Backend> Server<B> {
    /// Starts a node: connects to Redis (if configured), binds the port and serves.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("0.0.0.0", config.port))
            .await
            .with_context(|| format!("cannot listen on port {}", config.port))?;
        Self::start_on(config, listener).await
    }

    /// Starts a node on an already bound listener.
    pub async fn start_on(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let node_name = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{:06x}", rand::random::<u32>() & 0xff_ffff));
        config.check()?;
        // Presence is keyed by incarnation, so a restarted node never inherits a dead one's sockets.
        let incarnation = format!("{node_name}-{:08x}", rand::random::<u32>());
        let Shared {
            driver,
            presence,
            history,
            admin_sessions,
        } = B::connect(&config, incarnation)
            .await
            .context("cannot connect to Redis")?;
        let cluster = Cluster::new(
            driver,
            ClusterConfig {
                key: config.redis_key.clone(),
                node_name: node_name.clone(),
                request_timeout: config.request_timeout(),
                heartbeat_interval: (config.node_timeout() / 4).max(Duration::from_millis(50)),
                node_timeout: config.node_timeout(),
                specific_response_channel: config.redis_specific_response_channel,
                max_pending_broadcasts: config.max_pending_broadcasts,
                // The Admin UI's namespace is not the chat's to count.
                max_namespaces: config.max_namespaces
                    + usize::from(config.admin_ui.credentials().is_some()),
                // A namespace joins the cluster only once a socket passed `authenticate`.
                lazy_namespaces: true,
                subscription_mode: config.subscription_mode,
                ..ClusterConfig::default()
            },
        );
        let chat = Arc::new(Chat::new(config, cluster.clone(), presence, history));
        let gate = Gate::new(
            chat.admission.clone(),
            chat.metrics.clone(),
            chat.config.http_body_timeout(),
            chat.config.trusted_proxies()?,
        );
        let admin_ui = AdminUi::new(
            &chat.config.admin_ui,
            admin_sessions,
            gate.clone(),
            &node_name,
        );
        let mut builder = SocketIo::builder()
            .req_path(chat.config.socketio_path.clone())
            .ping_interval(chat.config.ping_interval())
            .ping_timeout(chat.config.ping_timeout())
            .connect_timeout(chat.config.connect_timeout())
            .upgrade_timeout(chat.config.ws_upgrade_timeout())
            .max_buffer_size(chat.config.socket_buffer)
            .ws_read_buffer_size(chat.config.ws_read_buffer)
            .max_payload(chat.config.max_payload_bytes)
            .ws_max_message_size(chat.config.max_payload_bytes as usize)
            .ws_max_frame_size(chat.config.max_payload_bytes as usize)
            .with_adapter::<Adapter<B>>(cluster.clone())
            .with_state(chat.clone());
        if let Some(admin_ui) = &admin_ui {
            builder = builder.with_state(admin_ui.clone());
        }
        let (socketio, io) = builder.build_svc();
        cluster.bind(&io);
        chat.follow_room_changes(&io);
        Chat::<B>::serve_namespaces(&io).await?;
        // `/` always exists: it joins the cluster at once, which starts the node's heartbeats.
        cluster
            .admit("/")
            .await
            .context("cannot join the cluster")?;
        let timers = timers::spawn(chat.clone(), io.clone());
        let sweeper = timers::spawn_sweeper(io.clone(), chat.clone());
        let admin_ui_task = match &admin_ui {
            Some(admin_ui) => Some(
                admin_ui
                    .start(&chat, &io)
                    .await
                    .context("cannot start the Admin UI")?,
            ),
            None => None,
        };

        web::report(&chat.config.web_dir);
        let limits = chat.admission.limits();
        tracing::info!(
            max_connections = limits.max,
            high_water = limits.high_water,
            low_water = limits.low_water,
            per_ip = ?limits.per_ip,
            "admission limits"
        );
        let mut app = admin::routes(chat.clone(), io.clone())
            .merge(socketio_routes(&chat.config, socketio, gate)?)
            .merge(web::routes(&chat.config.web_dir));
        if admin_ui.is_some() {
            let settings = &chat.config.admin_ui;
            app = app.merge(admin_ui::files::routes(
                &settings.admin_ui_path,
                &settings.admin_ui_dir,
            ));
        }
        if chat.config.serve_client {
            app = app.merge(client_bundle::routes(
                &chat.config.socketio_path,
                &chat.config.socketio_client_dir,
            ));
        }
        let app = app.layer(axum::middleware::map_request(
            request_parts::compact_request_parts,
        ));
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let mode = std::any::type_name::<B>()
            .rsplit("::")
            .next()
            .unwrap_or_default();
        tracing::info!(node = %node_name, %addr, mode, "chat-server listening");
        let task_chat: Arc<Chat<B>> = chat.clone();
        let task = tokio::spawn(async move {
            let shutdown = {
                let io = io.clone();
                async move {
                    let _ = stopped.await;
                    tracing::info!("shutting down: closing sockets so clients reconnect elsewhere");
                    io.close().await;
                }
            };
            let header_timeout = task_chat.config.http_header_timeout();
            let metrics = task_chat.metrics.clone();
            connections::serve::serve(listener, app, header_timeout, metrics, shutdown).await;
            timers.abort();
            sweeper.abort();
            if let Some(task) = admin_ui_task {
                task.abort();
            }
            let grace = task_chat.config.leave_grace();
            if let Err(err) = task_chat.presence.retire(grace).await {
                tracing::error!(%err, "could not hand over presence");
            }
            task_chat.cluster.close().await;
        });
        Ok(Self {
            addr,
            chat,
            stop,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn chat(&self) -> &Arc<Chat<B>> {
        &self.chat
    }

    /// Graceful shutdown: stop accepting, close sockets (their users get leave timers, so those
    /// who reconnect elsewhere within the grace are not announced), leave the cluster.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_DEADLINE, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("graceful shutdown did not finish in time; stopping anyway");
            task.abort();
        }
        tracing::info!("stopped");
    }
}

/// The Socket.IO endpoint at `SOCKETIO_PATH`, with CORS for the origins of `CORS_ORIGINS` (and
/// only there: the admin API never answers another origin).
fn socketio_routes<S>(config: &Config, socketio: S, gate: Arc<Gate>) -> anyhow::Result<Router>
where
    S: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send,
{
    let router = Router::new()
        .route_service(&format!("{}/", config.socketio_path), socketio)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            connections::gate::admit,
        ));
    let cors = match config.cors()? {
        None => return Ok(router),
        Some(Cors::Any) => CorsLayer::new().allow_origin(AllowOrigin::any()),
        Some(Cors::Origins(origins)) => CorsLayer::new()
            .allow_origin(
                origins
                    .iter()
                    .map(|o| o.parse())
                    .collect::<Result<Vec<HeaderValue>, _>>()?,
            )
            .allow_credentials(true),
    };
    let cors = cors
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .max_age(Duration::from_secs(600));
    Ok(router.layer(cors))
}
