//! A third-party client (python-socketio, from PyPI) chats through the real `chat-server` binary
//! running as two nodes on one Redis. `scripts/test.sh` builds the binary and prepares the Python
//! virtual environment (`SMOKE_PYTHON`).

use anyhow::Context;
use cluster_tests::{
    TestRedis, init_tracing,
    process::{NodeProcess, free_port, workspace},
    unique_key,
};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client_chats_across_two_binary_nodes() -> anyhow::Result<()> {
    init_tracing();
    let python = std::env::var("SMOKE_PYTHON").context(
        "SMOKE_PYTHON is not set: run ./scripts/test.sh, which prepares the python-socketio venv",
    )?;
    let redis = TestRedis::start().await?;
    let (url, key) = (redis.url(), unique_key("python"));
    let env = [("REDIS_URL", url.as_str()), ("REDIS_KEY", key.as_str())];
    let nodes = [
        NodeProcess::start("py-node-1", free_port()?, &env).await?,
        NodeProcess::start("py-node-2", free_port()?, &env).await?,
    ];
    let output = Command::new(python)
        .arg(workspace().join("tests/smoke/smoke.py"))
        .args(nodes.iter().map(NodeProcess::url))
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "python smoke test failed");
    assert!(stdout.contains("python smoke: 7 passed, 0 failed"));
    Ok(())
}
