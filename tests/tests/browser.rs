//! The web client of `web/` in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `web/node_modules`) against two `chat-server` binary nodes on one Redis (three for the Admin UI),
//! each serving the built client. `scripts/test.sh` installs Chromium, runs `npm ci` in `web/`,
//! builds the client and the binary. Screenshots land in `target/browser-artifacts/` (and
//! `target/browser-artifacts-recovery/`, `target/browser-artifacts-scrollback/`,
//! `target/browser-artifacts-admin-ui/`).

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use anyhow::Context;
use cluster_tests::{
    TestRedis, init_tracing,
    process::{NodeProcess, free_port, target_dir, workspace},
    unique_key,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

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

/// The built client (`web/dist`), once everything a browser test needs is there.
fn prepared(web: &Path) -> anyhow::Result<PathBuf> {
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
    Ok(dist)
}

const NODE_NAMES: [&str; 3] = ["web-node-1", "web-node-2", "web-node-3"];

/// Redis, and `N` nodes (at most 3) on it serving the built client `dist`, with `extra`
/// settings; also the environment they were started with, to start one again.
async fn start_nodes<const N: usize>(
    test: &str,
    dist: &Path,
    extra: &[(&str, &str)],
) -> anyhow::Result<(TestRedis, Vec<(String, String)>, [NodeProcess; N])> {
    let redis = TestRedis::start().await?;
    let dist = dist.to_str().context("web/dist is not a UTF-8 path")?;
    let mut env = vec![
        ("REDIS_URL".to_string(), redis.url()),
        ("REDIS_KEY".to_string(), unique_key(test)),
        ("WEB_DIR".to_string(), dist.to_string()),
        ("LEAVE_GRACE_MS".to_string(), LEAVE_GRACE_MS.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut nodes = Vec::with_capacity(N);
    for name in &NODE_NAMES[..N] {
        nodes.push(NodeProcess::start(name, free_port()?, &borrowed(&env)).await?);
    }
    let nodes = nodes
        .try_into()
        .map_err(|_| anyhow::anyhow!("started a different number of nodes"))?;
    Ok((redis, env, nodes))
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_across_two_nodes() -> anyhow::Result<()> {
    run_on_two_nodes(
        "chat.e2e.mjs",
        "browser-artifacts",
        &[("MAX_MESSAGE_LEN", MAX_MESSAGE_LEN)],
        &[
            ("LEAVE_GRACE_MS", LEAVE_GRACE_MS),
            ("MAX_MESSAGE_LEN", MAX_MESSAGE_LEN),
        ],
    )
    .await
}

/// A room with more history than one join shows: scrolling to the top of the log loads the
/// earlier pages until the room's first message, each message once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_scrolls_back_to_the_rooms_first_message() -> anyhow::Result<()> {
    run_on_two_nodes(
        "scrollback.e2e.mjs",
        "browser-artifacts-scrollback",
        // A join shows about 25 of the room's 150 messages, all of them kept; one socket posts
        // them all at once.
        &[
            ("HISTORY_LEN", "500"),
            ("HISTORY_ACK_BYTES", "4096"),
            ("RATE_LIMIT_PER_SEC", "1000"),
            ("RATE_LIMIT_BURST", "1000"),
        ],
        &[],
    )
    .await
}

/// The operator's tour of the Admin UI (`web/e2e/admin-ui.e2e.mjs`): served by node 1, logged in,
/// it lists the three nodes and the chat sockets of nodes 2 and 3, and disconnecting Carol's
/// socket from it shows on her chat page. Screenshots in `target/browser-artifacts-admin-ui/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_sees_the_cluster_and_disconnects_a_chat_socket() -> anyhow::Result<()> {
    const USERNAME: &str = "ops";
    const PASSWORD: &str = "a long admin passphrase";
    init_tracing();
    let web = web();
    let dist = prepared(&web)?;
    let hash = bcrypt::hash(PASSWORD, 4)?;
    let settings = [
        ("ADMIN_UI_USERNAME", USERNAME),
        ("ADMIN_UI_PASSWORD_HASH", hash.as_str()),
        ("ADMIN_UI_MODE", "development"),
    ];
    let (_redis, _, nodes) = start_nodes::<3>("browser-admin-ui", &dist, &settings).await?;
    let third = nodes[2].url();
    let env = [
        ("THIRD_NODE_URL", third.as_str()),
        ("ADMIN_UI_USERNAME", USERNAME),
        ("ADMIN_UI_PASSWORD", PASSWORD),
    ];
    run_script(
        "admin-ui.e2e.mjs",
        "browser-artifacts-admin-ui",
        &nodes[..2],
        &env,
    )
    .await
}

/// Runs `web/e2e/{script}` against two nodes started with `settings`, with `env` for the script,
/// its screenshots in `target/{artifacts}`; fails unless every check of it passed.
async fn run_on_two_nodes(
    script: &str,
    artifacts: &str,
    settings: &[(&str, &str)],
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    init_tracing();
    let web = web();
    let dist = prepared(&web)?;
    let (_redis, _, nodes) = start_nodes::<2>(script, &dist, settings).await?;
    run_script(script, artifacts, &nodes, env).await
}

/// Runs `web/e2e/{script}` with the URLs of `nodes`, with `env`, its screenshots in
/// `target/{artifacts}`; fails unless every check of it passed.
async fn run_script(
    script: &str,
    artifacts: &str,
    nodes: &[NodeProcess],
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    let web = web();
    let artifacts = target_dir().join(artifacts);
    // Screenshots of an earlier run must not pass for this one's.
    if artifacts.exists() {
        std::fs::remove_dir_all(&artifacts)?;
    }
    let run = Command::new("node")
        .arg(format!("e2e/{script}"))
        .args(nodes.iter().map(NodeProcess::url))
        .arg(&artifacts)
        .envs(env.iter().copied())
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

/// A page whose node is killed (SIGKILL) while another page keeps talking ends with every message
/// of the room exactly once, in order, its own included: it rejoins with `since` once the node is
/// back on the same port and resends what was unconfirmed with the same `clientId` (one message
/// of its was stored by the node just before the kill, its ack lost; another's ack is lost with
/// the node up, so the page's retry meets the server's clientId dedupe).
/// `web/e2e/recovery.e2e.mjs` drives the pages and prints `KILL 1` when node 1 should die; this
/// kills it, restarts it on the same port with the same settings, and answers `RESTARTED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_node_is_killed_ends_with_every_message_once_in_order() -> anyhow::Result<()> {
    init_tracing();
    let web = web();
    let dist = prepared(&web)?;
    // Acks of about 4 messages: what a page missed while its node was down takes several pages.
    let (_redis, env, mut nodes) =
        start_nodes::<2>("browser-kill", &dist, &[("HISTORY_ACK_BYTES", "1024")]).await?;
    // Its own folder: the other browser test empties `browser-artifacts` when it starts.
    let artifacts = target_dir().join("browser-artifacts-recovery");
    if artifacts.exists() {
        std::fs::remove_dir_all(&artifacts)?;
    }
    let mut e2e = Command::new("node")
        .arg("e2e/recovery.e2e.mjs")
        .args(nodes.iter().map(NodeProcess::url))
        .arg(&artifacts)
        .env("CHROMIUM", CHROMIUM)
        .current_dir(&web)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run `node`: {PREPARE}"))?;
    let mut orders = e2e.stdin.take().context("no stdin")?;
    let mut lines = BufReader::new(e2e.stdout.take().context("no stdout")?).lines();
    let mut stderr = e2e.stderr.take().context("no stderr")?;
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut kills = 0;
    let run = async {
        let mut stdout = String::new();
        while let Some(line) = lines.next_line().await? {
            println!("{line}");
            stdout.push_str(&line);
            stdout.push('\n');
            if line.trim() == "KILL 1" {
                nodes[0].kill().await?;
                kills += 1;
                println!("     node 1 killed (SIGKILL)");
                // Down long enough for the page to notice and to try reconnecting.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                nodes[0].restart(NODE_NAMES[0], &borrowed(&env)).await?;
                println!("     node 1 restarted on port {}", nodes[0].port);
                orders.write_all(b"RESTARTED\n").await?;
                orders.flush().await?;
            }
        }
        anyhow::Ok((stdout, e2e.wait().await?))
    };
    let (stdout, status) = tokio::time::timeout(E2E_TIMEOUT, run)
        .await
        .context("the browser test hung")??;
    print!("{}", errors.await?);
    println!("screenshots: {}", artifacts.display());
    assert_eq!(kills, 1, "the e2e script asked for one kill");
    assert!(status.success(), "the browser test failed");
    assert!(stdout.contains(" passed, 0 failed"));
    Ok(())
}
