//! The `chat-server` binary itself: configuration from the environment and the SIGTERM path.

use std::time::{Duration, Instant};

use cluster_tests::{
    Client, TestRedis, init_tracing,
    process::{NodeProcess, free_port},
    unique_key,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_and_exits_without_announcing_users_who_come_back()
-> anyhow::Result<()> {
    init_tracing();
    let redis = TestRedis::start().await?;
    let (url, key) = (redis.url(), unique_key("sigterm"));
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_KEY", key.as_str()),
        ("LEAVE_GRACE_MS", "3000"),
    ];
    let staying = NodeProcess::start("stays", free_port()?, &env).await?;
    let mut leaving = NodeProcess::start("leaves", free_port()?, &env).await?;

    let mut bob = Client::connect(staying.port, "/", json!({ "userId": "bob" }), json!(1)).await?;
    bob.emit_with_ack("join", &[json!({ "room": "lobby" })])
        .await?;
    let mut alice =
        Client::connect(leaving.port, "/", json!({ "userId": "alice" }), json!(1)).await?;
    alice
        .emit_with_ack("join", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(bob.event("notice").await?[0]["kind"], json!("join"));

    let sent = Instant::now();
    leaving.terminate().await?;
    alice.disconnected().await?;
    let status = tokio::time::timeout(Duration::from_secs(10), leaving.child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    println!("SIGTERM to exit: {:?}", sent.elapsed());

    // Alice reconnects to the surviving node within the grace: nobody is told anything.
    let mut alice =
        Client::connect(staying.port, "/", json!({ "userId": "alice" }), json!(1)).await?;
    let ack = alice
        .emit_with_ack("join", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(ack[0]["online"].as_array().map(Vec::len), Some(2));
    assert!(
        bob.events_within("notice", Duration::from_millis(3500))
            .await
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_redis_waits_for_it() -> anyhow::Result<()> {
    init_tracing();
    let redis_port = free_port()?;
    let url = format!("redis://127.0.0.1:{redis_port}");
    let key = unique_key("late-redis");
    let port = free_port()?;
    let node = tokio::spawn(async move {
        let env = [("REDIS_URL", url.as_str()), ("REDIS_KEY", key.as_str())];
        NodeProcess::start("early", port, &env).await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !node.is_finished(),
        "the node neither exited nor became ready without Redis"
    );
    let _redis = TestRedis::start_on(redis_port).await?;
    let node = node.await??;
    let mut alice = Client::connect(node.port, "/", json!({ "userId": "alice" }), json!(1)).await?;
    let ack = alice
        .emit_with_ack("join", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true));
    Ok(())
}
