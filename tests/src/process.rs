//! `chat-server` binaries run as child processes (built by `scripts/test.sh`), stopped by PID.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context;
use tokio::process::{Child, Command};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Cargo's target directory, where builds and test artifacts go.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from)
}

fn server_binary() -> PathBuf {
    target_dir().join("debug").join("chat-server")
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sends `signal` (`TERM`, `STOP`, …) to a child process, by its PID.
pub async fn signal(child: &Child, signal: &str) -> anyhow::Result<()> {
    let pid = child.id().context("process already gone")?;
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// A node process; killed when dropped (`kill_on_drop`).
pub struct NodeProcess {
    pub port: u16,
    pub child: Child,
}

impl NodeProcess {
    /// Starts a node on `port` with extra environment and waits until `/readyz` answers.
    pub async fn start(name: &str, port: u16, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        // From the workspace root, as a node started from a checkout: relative defaults such as
        // WEB_DIR and SOCKETIO_CLIENT_DIR find their folders.
        let child = Command::new(server_binary())
            .current_dir(workspace())
            .env("PORT", port.to_string())
            .env("NODE_ID", name)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (built by scripts/test.sh)",
                    server_binary().display()
                )
            })?;
        let node = Self { port, child };
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            let ready = http
                .get(format!("http://127.0.0.1:{}/readyz", self.port))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("node on port {} never became ready", self.port)
    }

    /// Sends SIGTERM to this process (by its PID).
    pub async fn terminate(&self) -> anyhow::Result<()> {
        signal(&self.child, "TERM").await
    }

    /// Kills this process with SIGKILL (by its PID), as a crash would: no shutdown, its
    /// connections just drop. Returns once it is gone and its port is free.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        signal(&self.child, "KILL").await?;
        self.child.wait().await?;
        Ok(())
    }

    /// Starts the node again on the same port, as a restarted process (after `kill`): `name` and
    /// `env` are those it was started with. Returns once `/readyz` answers.
    pub async fn restart(&mut self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
        *self = Self::start(name, self.port, env).await?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
