//! Node.js peers from `tests/interop/` (installed by `scripts/test.sh` with `npm ci`): a socket.io
//! server on @socket.io/redis-adapter, driven through its HTTP control interface, and the
//! @socket.io/redis-emitter script.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::process::{signal, workspace};

fn interop_dir() -> anyhow::Result<PathBuf> {
    let dir = workspace().join("tests").join("interop");
    anyhow::ensure!(
        dir.join("node_modules").is_dir(),
        "{}/node_modules is missing: run scripts/test.sh (it runs `npm ci` there)",
        dir.display()
    );
    Ok(dir)
}

fn node(script: &str) -> anyhow::Result<Command> {
    let dir = interop_dir()?;
    let mut command = Command::new("node");
    command
        .arg(dir.join(script))
        .current_dir(dir)
        .kill_on_drop(true);
    Ok(command)
}

/// How a Node.js server is set up.
pub struct NodeJsConfig<'a> {
    pub name: &'a str,
    pub redis_url: &'a str,
    pub key: &'a str,
    /// The adapter's `publishOnSpecificResponseChannel`.
    pub specific_response_channel: bool,
    /// `createShardedAdapter` in this `subscriptionMode` instead of `createAdapter`.
    pub subscription_mode: Option<&'a str>,
}

/// The `redis://` URLs of the nodes a `redis-cluster://h:p?node=h2:p2&…` URL names, comma-separated,
/// as `node-server.mjs` takes them for `createCluster`.
fn cluster_nodes(url: &str) -> Option<String> {
    let rest = url.strip_prefix("redis-cluster://")?;
    let (first, query) = rest.split_once('?').unwrap_or((rest, ""));
    let others = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("node="));
    let nodes: Vec<String> = std::iter::once(first)
        .chain(others)
        .map(|node| format!("redis://{node}"))
        .collect();
    Some(nodes.join(","))
}

/// A running `node-server.mjs`; killed when dropped.
pub struct NodeJsServer {
    pub port: u16,
    child: Child,
    http: reqwest::Client,
}

impl NodeJsServer {
    /// Starts the server and waits until its adapter is subscribed.
    pub async fn start(config: NodeJsConfig<'_>) -> anyhow::Result<Self> {
        let mut command = node("node-server.mjs")?;
        if let Some(mode) = config.subscription_mode {
            command.env("SUBSCRIPTION_MODE", mode);
        }
        if let Some(nodes) = cluster_nodes(config.redis_url) {
            command.env("REDIS_CLUSTER_NODES", nodes);
        }
        let mut child = command
            .env("REDIS_URL", config.redis_url)
            .env("REDIS_KEY", config.key)
            .env("NODE_NAME", config.name)
            .env(
                "SPECIFIC_RESPONSE_CHANNEL",
                config.specific_response_channel.to_string(),
            )
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run `node` (installed by scripts/test.sh)")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("node-server.mjs did not start within 20 s")??
            .context("node-server.mjs exited before listening")?;
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("unexpected first line from node-server.mjs: {first}"))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            port,
            child,
            http: reqwest::Client::new(),
        })
    }

    /// Runs a cluster operation on the Node.js server (see `operations` in `node-server.mjs`)
    /// and returns its result.
    pub async fn call(&self, operation: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self.call_timed(operation, body).await?.0)
    }

    /// Like [`call`](Self::call), with how long the operation took inside Node.js.
    pub async fn call_timed(
        &self,
        operation: &str,
        body: Value,
    ) -> anyhow::Result<(Value, Duration)> {
        let reply: Value = self
            .http
            .post(format!("http://127.0.0.1:{}/ctl/{operation}", self.port))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        let elapsed = Duration::from_secs_f64(reply["elapsedMs"].as_f64().unwrap_or(0.0) / 1000.0);
        match reply.get("result") {
            Some(result) => Ok((result.clone(), elapsed)),
            None => bail!("{operation} failed on Node.js: {}", reply["error"]),
        }
    }

    /// Freezes the process (SIGSTOP): its Redis connections stay open but it answers nothing.
    pub async fn freeze(&self) -> anyhow::Result<()> {
        signal(&self.child, "STOP").await
    }

    /// Kills the process (SIGKILL): no goodbye, its Redis connections just drop.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Publishes one order through @socket.io/redis-emitter (see `emitter.mjs`) and waits until it
/// has been sent.
pub async fn emitter(redis_url: &str, order: Value) -> anyhow::Result<()> {
    let output = node("emitter.mjs")?
        .arg(order.to_string())
        .env("REDIS_URL", redis_url)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "emitter.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
