//! A third-party client (python-socketio, from PyPI) chats through the real `chat-server` binary
//! running as two nodes on one Redis. `scripts/test.sh` builds the binary and prepares the Python
//! virtual environment (`SMOKE_PYTHON`).

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context;
use cluster_tests::{TestRedis, init_tracing, unique_key};
use tokio::process::{Child, Command};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn server_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    target.join("debug").join("chat-server")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a node; it is killed (by PID, through `kill_on_drop`) when the handle drops.
fn start_node(name: &str, port: u16, redis_url: &str, key: &str) -> anyhow::Result<Child> {
    Command::new(server_binary())
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis_url)
        .env("NODE_ID", name)
        .env("REDIS_KEY", key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (built by scripts/test.sh)",
                server_binary().display()
            )
        })
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..100 {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("node on port {port} never became ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client_chats_across_two_binary_nodes() -> anyhow::Result<()> {
    init_tracing();
    let python = std::env::var("SMOKE_PYTHON").context(
        "SMOKE_PYTHON is not set: run ./scripts/test.sh, which prepares the python-socketio venv",
    )?;
    let redis = TestRedis::start().await?;
    let key = unique_key("python");
    let ports = [free_port()?, free_port()?];
    let _nodes = [
        start_node("py-node-1", ports[0], &redis.url(), &key)?,
        start_node("py-node-2", ports[1], &redis.url(), &key)?,
    ];
    for port in ports {
        wait_ready(port).await?;
    }
    let output = Command::new(python)
        .arg(workspace().join("tests/smoke/smoke.py"))
        .args(ports.map(|p| format!("http://127.0.0.1:{p}")))
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "python smoke test failed");
    assert!(stdout.contains("python smoke: 7 passed, 0 failed"));
    Ok(())
}
