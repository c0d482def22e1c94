//! `chat-server` nodes for tests, each [`Isolated`] so a test can crash it or stop it gracefully.

use std::sync::Arc;

use chat_server::{
    Chat, Config, Server,
    backend::{Backend, Memory, Redis},
};
use serde_json::Value;

use crate::{isolated::Isolated, process::workspace};

/// The admin token of test nodes.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Test defaults: random port, short grace and timeouts, admin API on.
pub fn chat_config(name: &str, redis_url: Option<&str>, key: &str) -> Config {
    let mut config = Config::defaults();
    config.port = 0;
    config.redis_url = redis_url.map(String::from);
    config.node_id = Some(name.to_string());
    config.redis_key = key.to_string();
    config.leave_grace_ms = 800;
    config.node_timeout_ms = 1000;
    config.request_timeout_ms = 3000;
    config.admin_token = Some(ADMIN_TOKEN.to_string());
    // Tests run in tests/, not at the workspace root the default is relative to.
    config.socketio_client_dir = workspace().join("web/node_modules/socket.io-client/dist");
    config.admin_ui.admin_ui_dir = workspace().join("web/node_modules/@socket.io/admin-ui/ui/dist");
    config
}

/// A running chat-server node: on Redis unless started with [`ChatNode::solo`].
pub struct ChatNode<B: Backend = Redis> {
    pub name: String,
    pub port: u16,
    pub chat: Arc<Chat<B>>,
    runner: Isolated,
}

impl ChatNode {
    /// A node of the cluster on `config.redis_url`.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Self::on_backend(config).await
    }
}

impl ChatNode<Memory> {
    /// A single node, everything in memory.
    pub async fn solo(config: Config) -> anyhow::Result<Self> {
        Self::on_backend(config).await
    }
}

impl<B: Backend> ChatNode<B> {
    async fn on_backend(config: Config) -> anyhow::Result<Self> {
        let name = config.node_id.clone().unwrap_or_default();
        let (runner, (port, chat)) = Isolated::spawn(&name, move || async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let server = Server::<B>::start_on(config, listener).await?;
            let started = (server.port(), server.chat().clone());
            Ok((started, move || server.shutdown()))
        })
        .await?;
        Ok(Self {
            name,
            port,
            chat,
            runner,
        })
    }

    /// Kills the node without its shutdown path.
    pub fn crash(&self) {
        self.runner.crash();
    }

    /// Graceful shutdown (SIGTERM path), waiting for it to finish.
    pub fn stop(&self) {
        self.runner.stop();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The admin HTTP API of test nodes, with [`ADMIN_TOKEN`].
pub struct Admin {
    http: reqwest::Client,
}

impl Default for Admin {
    fn default() -> Self {
        Self::new()
    }
}

impl Admin {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
        }
    }

    /// `GET path` on `node`; fails unless it answers with a success status.
    pub async fn get<B: Backend>(&self, node: &ChatNode<B>, path: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .get(node.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "{path}: {}", res.status());
        Ok(res.json().await?)
    }

    /// `POST path` with `body` on `node`; fails unless it answers with a success status.
    pub async fn post<B: Backend>(
        &self,
        node: &ChatNode<B>,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(node.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "{path}: {}", res.status());
        Ok(res.json().await?)
    }
}

/// `n` nodes on the Redis at `redis_url`, named `chat-{i}`, each config tweaked by `tweak`,
/// once every node has heard of every other.
pub async fn chat_nodes(
    redis_url: &str,
    test: &str,
    n: usize,
    tweak: impl Fn(&mut Config),
) -> anyhow::Result<Vec<ChatNode>> {
    crate::init_tracing();
    let key = crate::unique_key(test);
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut config = chat_config(&format!("chat-{i}"), Some(redis_url), &key);
        tweak(&mut config);
        nodes.push(ChatNode::start(config).await?);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while nodes
        .iter()
        .any(|n| n.chat.cluster.nodes().len() != nodes.len())
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nodes did not discover each other"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(nodes)
}
