//! Sharded pub/sub on a Redis Cluster (3 masters): in the dynamic mode a node subscribes a room's
//! channel only while it hosts a socket of the room, so a broadcast to a room reaches only the
//! nodes that need it; rooms joined behind the adapter's back are found and subscribed.
//!
//! The cluster, chat and presence suites also run whole on a Redis Cluster in sharded mode with
//! `TEST_REDIS=cluster` (`scripts/test.sh` does).

use std::time::{Duration, Instant};

use cluster_tests::{
    client::Client, init_tracing, node::TestNode, node::test_config, redis_cluster::RedisCluster,
    unique_key,
};
use serde_json::json;
use socketio_cluster::{
    ClusterConfig, Driver, MemoryDriver, MemoryHub, RedisDriver, RedisDriverConfig,
    SubscriptionMode,
};

async fn nodes_on(
    cluster: &RedisCluster,
    key: &str,
    mode: SubscriptionMode,
    n: usize,
) -> anyhow::Result<Vec<TestNode<RedisDriver>>> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let url = cluster.url();
        let config = ClusterConfig {
            subscription_mode: mode,
            ..test_config(&format!("node-{i}"), key)
        };
        nodes.push(
            TestNode::start(config, move || async move {
                Ok(RedisDriver::connect(RedisDriverConfig::new(url)).await?)
            })
            .await?,
        );
    }
    Ok(nodes)
}

/// Waits until `channel` has `expected` subscribers on the cluster.
async fn subscribers(driver: &RedisDriver, channel: &str, expected: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = driver.num_sub(vec![channel.to_string()]).await?[0];
        if count == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{channel} has {count} subscribers, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client<D: Driver>(node: &TestNode<D>, name: &str, rooms: &[&str]) -> Client {
    let auth = json!({ "data": { "user": name }, "rooms": rooms });
    Client::connect(node.port, "/", auth, json!(name))
        .await
        .expect("client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_mode_subscribes_a_room_only_on_the_nodes_hosting_it() -> anyhow::Result<()> {
    init_tracing();
    let cluster = RedisCluster::start().await?;
    let key = unique_key("dynamic");
    let nodes = nodes_on(&cluster, &key, SubscriptionMode::Dynamic, 3).await?;
    let probe = RedisDriver::connect(RedisDriverConfig::new(cluster.url())).await?;
    let room = |r: &str| format!("{key}#/#{r}#");

    let mut alice = client(&nodes[0], "alice", &["r1"]).await;
    let mut bob = client(&nodes[1], "bob", &["r1", "r2"]).await;
    subscribers(&probe, &room("r1"), 2).await?;
    subscribers(&probe, &room("r2"), 1).await?;
    // Every node serves the namespace: its channel counts all three.
    subscribers(&probe, &format!("{key}#/#"), 3).await?;

    let received_before = nodes[2].cluster.stats().received;
    nodes[2].io.to("r1").emit("msg", &"to r1").await.unwrap();
    nodes[0].io.to("r2").emit("msg", &"to r2").await.unwrap();
    assert_eq!(alice.event("msg").await?, [json!("to r1")]);
    assert_eq!(bob.event("msg").await?, [json!("to r1")]);
    assert_eq!(bob.event("msg").await?, [json!("to r2")]);
    assert!(
        alice
            .events_within("msg", Duration::from_millis(300))
            .await
            .is_empty()
    );
    // Node 2 hosts neither room: it received neither broadcast (only heartbeats, at most a few).
    let heard = nodes[2].cluster.stats().received - received_before;
    assert!(heard < 10, "node-2 received {heard} messages");

    // Requests reach every node, whatever rooms they host.
    let sockets = nodes[2]
        .cluster
        .fetch_sockets("/", &socketio_cluster::Target::rooms(["r1"]))
        .await?;
    assert_eq!(sockets.len(), 2);

    // Once the room is empty on a node, that node unsubscribes its channel.
    alice.close();
    subscribers(&probe, &room("r1"), 1).await?;
    bob.close();
    subscribers(&probe, &room("r1"), 0).await?;
    subscribers(&probe, &room("r2"), 0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_keeps_every_broadcast_on_the_namespace_channel() -> anyhow::Result<()> {
    init_tracing();
    let cluster = RedisCluster::start().await?;
    let key = unique_key("static");
    let nodes = nodes_on(&cluster, &key, SubscriptionMode::Static, 2).await?;
    let probe = RedisDriver::connect(RedisDriverConfig::new(cluster.url())).await?;
    let mut alice = client(&nodes[0], "alice", &["r1"]).await;
    subscribers(&probe, &format!("{key}#/#"), 2).await?;
    nodes[1].io.to("r1").emit("msg", &"hi").await.unwrap();
    assert_eq!(alice.event("msg").await?, [json!("hi")]);
    subscribers(&probe, &format!("{key}#/#r1#"), 0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_joined_behind_the_adapters_back_is_subscribed_and_counted() -> anyhow::Result<()> {
    init_tracing();
    let hub = MemoryHub::sharded();
    let key = unique_key("behind");
    let mut nodes: Vec<TestNode<MemoryDriver>> = Vec::new();
    for i in 0..2 {
        let hub = hub.clone();
        let config = test_config(&format!("node-{i}"), &key);
        nodes.push(TestNode::start(config, move || async move { Ok(hub.driver()) }).await?);
    }
    let mut carol = client(&nodes[0], "carol", &[]).await;
    // SocketRef::join writes socketioxide's room table directly: the adapter does not see it.
    let socket = nodes[0]
        .io
        .sockets()
        .into_iter()
        .next()
        .expect("one socket");
    socket.join("late");
    let deadline = Instant::now() + Duration::from_secs(3);
    while nodes[0].cluster.stats().rooms_reconciled == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the room was never found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(nodes[0].cluster.stats().rooms_reconciled, 1);
    nodes[1].io.to("late").emit("msg", &"found").await.unwrap();
    assert_eq!(carol.event("msg").await?, [json!("found")]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_channels_are_subscribed_again_after_the_subscriber_connections_drop()
-> anyhow::Result<()> {
    use fred::interfaces::ClientLike;
    init_tracing();
    let cluster = RedisCluster::start().await?;
    let key = unique_key("resubscribe");
    let mut nodes = Vec::new();
    for i in 0..2 {
        let url = cluster.url();
        // Clients stay connected through the drop, so the test sees the subscriptions come back.
        let config = ClusterConfig {
            disconnect_on_loss: false,
            ..test_config(&format!("node-{i}"), &key)
        };
        nodes.push(
            TestNode::start(config, move || async move {
                Ok(RedisDriver::connect(RedisDriverConfig::new(url)).await?)
            })
            .await?,
        );
    }
    let probe = RedisDriver::connect(RedisDriverConfig::new(cluster.url())).await?;
    let mut alice = client(&nodes[0], "alice", &["r1"]).await;
    let mut bob = client(&nodes[1], "bob", &["r2"]).await;
    subscribers(&probe, &format!("{key}#/#r1#"), 1).await?;

    // Every master drops every pub/sub connection.
    for port in cluster.ports() {
        let master = fred::clients::Client::new(
            fred::types::config::Config::from_url(&format!("redis://127.0.0.1:{port}"))?,
            None,
            None,
            None,
        );
        master.init().await?;
        let _: fred::types::Value = master
            .custom(fred::cmd!("CLIENT"), vec!["KILL", "TYPE", "pubsub"])
            .await?;
        master.quit().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes.iter().any(|n| n.cluster.stats().reconnects == 0) {
        anyhow::ensure!(Instant::now() < deadline, "the nodes never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subscribers(&probe, &format!("{key}#/#r1#"), 1).await?;
    subscribers(&probe, &format!("{key}#/#r2#"), 1).await?;
    subscribers(&probe, &format!("{key}#/#"), 2).await?;
    nodes[1].io.to("r1").emit("msg", &"again").await.unwrap();
    nodes[0].io.to("r2").emit("msg", &"again").await.unwrap();
    assert_eq!(alice.event("msg").await?, [json!("again")]);
    assert_eq!(bob.event("msg").await?, [json!("again")]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_private_mode_gives_each_socket_its_own_channel() -> anyhow::Result<()> {
    init_tracing();
    let hub = MemoryHub::sharded();
    let key = unique_key("private");
    let mut nodes: Vec<TestNode<MemoryDriver>> = Vec::new();
    for i in 0..2 {
        let hub = hub.clone();
        let config = ClusterConfig {
            subscription_mode: SubscriptionMode::DynamicPrivate,
            ..test_config(&format!("node-{i}"), &key)
        };
        nodes.push(TestNode::start(config, move || async move { Ok(hub.driver()) }).await?);
    }
    let mut dave = client(&nodes[0], "dave", &[]).await;
    let sid = nodes[0]
        .io
        .sockets()
        .into_iter()
        .next()
        .expect("one socket")
        .id;
    let channel = format!("{key}#/#{sid}#");
    let probe = hub.driver();
    let deadline = Instant::now() + Duration::from_secs(3);
    while probe.num_sub(vec![channel.clone()]).await?[0] != 1 {
        anyhow::ensure!(Instant::now() < deadline, "{channel} was never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Expected, not a room joined behind the adapter's back.
    assert_eq!(nodes[0].cluster.stats().rooms_reconciled, 0);
    nodes[1]
        .io
        .to(sid.to_string())
        .emit("msg", &"just you")
        .await
        .unwrap();
    assert_eq!(dave.event("msg").await?, [json!("just you")]);
    Ok(())
}
