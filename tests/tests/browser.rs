//! The web client of `web/` in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `web/node_modules`) against two `chat-server` binary nodes on one Redis,
//! each serving the built client. `scripts/test.sh` installs Chromium, runs `npm ci` in `web/`,
//! builds the client and the binary. Screenshots land in `target/browser-artifacts/`.

use std::{path::PathBuf, process::Output, time::Duration};

use anyhow::Context;
use cluster_tests::{
    TestRedis, init_tracing,
    process::{NodeProcess, free_port, target_dir, workspace},
    unique_key,
};
use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Short, so the test is quick, yet long enough for a page to reload within it on a busy machine.
const LEAVE_GRACE_MS: &str = "2000";
const MAX_MESSAGE_LEN: &str = "200";
/// The e2e script gives up by itself after 120 s; this only catches a hung Node.js.
const E2E_TIMEOUT: Duration = Duration::from_secs(180);

const PREPARE: &str = "run ./scripts/test.sh, which installs Chromium, runs `npm ci` in web/ and \
                       builds the client";

fn web() -> PathBuf {
    workspace().join("web")
}

fn print(output: &Output) {
    println!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn web_client_unit_tests_pass() -> anyhow::Result<()> {
    let output = Command::new("node")
        .args(["--test", "test/"])
        .current_dir(web())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run `node`: {PREPARE}"))?;
    print(&output);
    assert!(output.status.success(), "web/test failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_across_two_nodes() -> anyhow::Result<()> {
    init_tracing();
    let web = web();
    let dist = web.join("dist");
    for needed in [
        PathBuf::from(CHROMIUM),
        web.join("node_modules").join("playwright-core"),
        dist.join("index.html"),
    ] {
        anyhow::ensure!(
            needed.exists(),
            "{} is missing: {PREPARE}",
            needed.display()
        );
    }
    let redis = TestRedis::start().await?;
    let (url, key) = (redis.url(), unique_key("browser"));
    let dist = dist.to_str().context("web/dist is not a UTF-8 path")?;
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_KEY", key.as_str()),
        ("WEB_DIR", dist),
        ("LEAVE_GRACE_MS", LEAVE_GRACE_MS),
        ("MAX_MESSAGE_LEN", MAX_MESSAGE_LEN),
    ];
    let nodes = [
        NodeProcess::start("web-node-1", free_port()?, &env).await?,
        NodeProcess::start("web-node-2", free_port()?, &env).await?,
    ];
    let artifacts = target_dir().join("browser-artifacts");
    // Screenshots of an earlier run must not pass for this one's.
    if artifacts.exists() {
        std::fs::remove_dir_all(&artifacts)?;
    }
    let run = Command::new("node")
        .arg("e2e/chat.e2e.mjs")
        .args(nodes.iter().map(NodeProcess::url))
        .arg(&artifacts)
        .env("LEAVE_GRACE_MS", LEAVE_GRACE_MS)
        .env("MAX_MESSAGE_LEN", MAX_MESSAGE_LEN)
        .env("CHROMIUM", CHROMIUM)
        .current_dir(&web)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(E2E_TIMEOUT, run)
        .await
        .context("the browser test hung")?
        .with_context(|| format!("cannot run `node`: {PREPARE}"))?;
    print(&output);
    println!("screenshots: {}", artifacts.display());
    assert!(output.status.success(), "the browser test failed");
    assert!(String::from_utf8_lossy(&output.stdout).contains(" passed, 0 failed"));
    Ok(())
}
