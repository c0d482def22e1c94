//! `redis-sentinel://`: the nodes follow Sentinel to the primary, and after the primary dies and
//! Sentinel promotes its replica, they reconnect to it: broadcasts and presence resume. The time
//! from the kill to the first message delivered across nodes again is printed, and nothing said
//! before the failover is lost (the replica was in sync).
//!
//! One container runs the primary, its replica and one sentinel, each on a host port mapped to
//! the same port inside, so the addresses Sentinel hands out (127.0.0.1:port) work from the host.

use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_tests::{
    ADMIN_TOKEN, ChatNode, chat_config, chatter::Chatter, process::free_port, unique_key,
};
use fred::{
    clients::Client as RedisClient,
    interfaces::ClientLike,
    types::{CustomCommand, Value as RedisValue, config::Config as RedisConfig},
};
use serde_json::{Value, json};
use testcontainers_modules::testcontainers::{
    GenericImage, ImageExt,
    core::{ExecCommand, IntoContainerPort, WaitFor},
    runners::AsyncRunner,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_sentinel_failover_and_chat_resumes() -> anyhow::Result<()> {
    cluster_tests::init_tracing();
    let (primary, replica, sentinel) = (free_port()?, free_port()?, free_port()?);
    let script = format!(
        "redis-server --port {primary} --protected-mode no --save '' --repl-diskless-sync-delay 0 --daemonize yes && \
         redis-server --port {replica} --protected-mode no --save '' --dir /tmp --replicaof 127.0.0.1 {primary} --daemonize yes && \
         printf 'port {sentinel}\\nprotected-mode no\\nsentinel monitor m 127.0.0.1 {primary} 1\\n\
         sentinel down-after-milliseconds m 1000\\nsentinel failover-timeout m 2000\\n' \
         > /tmp/sentinel.conf && exec redis-server /tmp/sentinel.conf --sentinel"
    );
    let container = GenericImage::new("redis", "7")
        .with_wait_for(WaitFor::message_on_stdout("+monitor master m"))
        .with_cmd(["sh", "-c", &script])
        .with_mapped_port(primary, primary.tcp())
        .with_mapped_port(replica, replica.tcp())
        .with_mapped_port(sentinel, sentinel.tcp())
        .start()
        .await
        .context("starting redis:7 with a sentinel (scripts/test-env.sh prepares the image)")?;

    // The replica must hold the data before the primary dies, and Sentinel must know it (from the
    // primary's INFO, every few seconds) to promote it.
    let client = |port: u16| async move {
        let client = RedisClient::new(
            RedisConfig::from_url(&format!("redis://127.0.0.1:{port}"))?,
            None,
            None,
            None,
        );
        client.init().await?;
        anyhow::Ok(client)
    };
    let (sentinel_client, replica_client) = (client(sentinel).await?, client(replica).await?);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let role: Vec<RedisValue> = replica_client
            .custom(command("ROLE"), Vec::<String>::new())
            .await?;
        let replicas: RedisValue = sentinel_client
            .custom(command("SENTINEL"), vec!["REPLICAS", "m"])
            .await?;
        let synced = role.get(3).and_then(RedisValue::as_str).as_deref() == Some("connected");
        if synced && !replicas.into_array().is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica never synced, or the sentinel never saw it"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let url = format!("redis-sentinel://127.0.0.1:{sentinel}/0?sentinelServiceName=m");
    let key = unique_key("sentinel");
    let mut nodes = Vec::new();
    for i in 0..2 {
        nodes.push(ChatNode::start(chat_config(&format!("sentinel-{i}"), Some(&url), &key)).await?);
    }
    let mut alice = Chatter::join("alice", "r", vec![nodes[0].port]).await?;
    let mut bob = Chatter::join("bob", "r", vec![nodes[1].port]).await?;
    let before = alice.send("before").await?;
    bob.listen(Duration::from_millis(300)).await?;
    anyhow::ensure!(bob.view().len() == 1, "bob heard the first message");

    let killed = Instant::now();
    container
        .exec(ExecCommand::new([
            "redis-cli",
            "-p",
            &primary.to_string(),
            "shutdown",
            "nosave",
            "now",
        ]))
        .await?
        // The exec returns once started: its output ends when the primary is gone.
        .stdout_to_vec()
        .await?;
    println!("primary 127.0.0.1:{primary} killed; the sentinel should promote 127.0.0.1:{replica}");
    let sent = alice.send("after the failover").await?;
    let acked = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bob
        .view()
        .values()
        .any(|m| m["text"] == json!("after the failover"))
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "bob never heard the message after the failover"
        );
        bob.listen(Duration::from_millis(200)).await?;
    }
    let delivered = killed.elapsed();
    let primary_now: Vec<String> = sentinel_client
        .custom(command("SENTINEL"), vec!["GET-MASTER-ADDR-BY-NAME", "m"])
        .await?;
    assert_eq!(
        primary_now.get(1),
        Some(&replica.to_string()),
        "the replica was promoted"
    );
    let presence: Value = reqwest::Client::new()
        .get(nodes[0].url("/api/rooms/r/presence"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let mut online: Vec<&str> = presence["online"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    online.sort_unstable();
    assert_eq!(online, ["alice", "bob"], "presence resumed");
    // The promoted replica had the room's sequence (it was in sync), but it cannot know that: the
    // next message starts a new epoch, so that no seq is ever given twice in one epoch.
    assert_eq!(sent["seq"], json!(2));
    assert_ne!(
        sent["epoch"], before["epoch"],
        "a new epoch after a failover"
    );
    // Bob saw the new epoch, rejoined with `since` in the old one and was recovered, not reset:
    // the promoted replica kept everything, so nothing was lost and no alarm is due.
    let texts: Vec<&Value> = bob.view().values().map(|m| &m["text"]).collect();
    assert_eq!(texts, [&json!("before"), &json!("after the failover")]);
    assert_eq!(
        bob.stats.unrecovered_joins, 0,
        "a false alarm: {}",
        bob.stats
    );
    assert!(bob.stats.recovered_joins >= 1, "{}", bob.stats);
    println!(
        "after the primary died: a message acked {acked:?} later (seq 2, new epoch), heard on the other node {delivered:?} later; presence {online:?}"
    );
    Ok(())
}

fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, None, false)
}
