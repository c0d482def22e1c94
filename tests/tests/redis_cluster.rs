//! The 3-master Redis Cluster of `cluster_tests::redis_cluster`: fred, given its
//! `redis-cluster://` URL, connects to every master at the address the cluster announces, keys
//! of each master's slots are written and read back through the one clustered client, and a
//! sharded publish (`SPUBLISH`) reaches a sharded subscriber (`SSUBSCRIBE`).

use std::time::{Duration, Instant};

use cluster_tests::redis_cluster::RedisCluster;
use fred::{
    clients::{Client, SubscriberClient},
    interfaces::{ClientLike, EventInterface, KeysInterface, PubsubInterface},
    types::{CustomCommand, MessageKind, config::Config},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_cluster_serves_keys_of_every_slot() -> anyhow::Result<()> {
    cluster_tests::init_tracing();
    let started = Instant::now();
    let cluster = RedisCluster::start().await?;
    println!(
        "3-master Redis Cluster ready in {:?} at {}",
        started.elapsed(),
        cluster.url()
    );
    let ports = cluster.ports();

    // Each node, asked directly: three masters, each announcing 127.0.0.1 and its own port, each
    // with a share of the slots.
    let node = centralized(ports[0]).await?;
    let nodes: String = node.custom(command("CLUSTER"), vec!["NODES"]).await?;
    let mut masters: Vec<u16> = nodes
        .lines()
        .filter(|line| line.split(' ').nth(2).is_some_and(|f| f.contains("master")))
        .filter(|line| line.split(' ').nth(8).is_some()) // a slot range
        .filter_map(|line| line.split(' ').nth(1)?.strip_prefix("127.0.0.1:"))
        .filter_map(|address| address.split('@').next()?.parse().ok())
        .collect();
    masters.sort_unstable();
    let mut expected = ports.to_vec();
    expected.sort_unstable();
    assert_eq!(masters, expected, "three masters with slots:\n{nodes}");

    let config = Config::from_url(&cluster.url())?;
    assert!(
        config.server.is_clustered(),
        "the URL gives a clustered config"
    );
    let client = Client::new(config.clone(), None, None, None);
    client.init().await?;
    let mut connected: Vec<u16> = client
        .active_connections()
        .iter()
        .map(|server| {
            assert_eq!(&*server.host, "127.0.0.1", "the announced host");
            server.port
        })
        .collect();
    connected.sort_unstable();
    assert_eq!(connected, expected, "fred connected to every master");

    // {a}, {b} and {c} hash to slots 15495, 3300 and 7365: one in each master's third.
    let keys = ["{a}x", "{b}x", "{c}x"];
    for (key, expected_slot) in keys.into_iter().zip([15495, 3300, 7365]) {
        let slot: i64 = node
            .custom(command("CLUSTER"), vec!["KEYSLOT", key])
            .await?;
        assert_eq!(slot, expected_slot, "the slot of {key}");
        let () = client
            .set(key, format!("value of {key}"), None, None, false)
            .await?;
    }
    for key in keys {
        let value: String = client.get(key).await?;
        assert_eq!(value, format!("value of {key}"));
    }
    let mut held = Vec::new();
    for port in ports {
        let here = centralized(port).await?;
        let keys_here: Vec<String> = here.custom(command("KEYS"), vec!["*"]).await?;
        here.quit().await?;
        assert_eq!(
            keys_here.len(),
            1,
            "127.0.0.1:{port} holds one key: {keys_here:?}"
        );
        held.extend(keys_here);
    }
    held.sort_unstable();
    assert_eq!(held, keys, "every key is on one master");

    // A sharded publish goes to the master of the channel's slot, where the subscriber is.
    let subscriber = SubscriberClient::new(config, None, None, None);
    subscriber.init().await?;
    let mut messages = subscriber.message_rx();
    let channel = "{b}room";
    subscriber.ssubscribe(channel).await?;
    let receivers: i64 = client.spublish(channel, "hello shard").await?;
    assert_eq!(receivers, 1, "one sharded subscriber on {channel}");
    let message = tokio::time::timeout(Duration::from_secs(5), messages.recv()).await??;
    assert_eq!(&*message.channel, channel);
    assert_eq!(message.kind, MessageKind::SMessage);
    assert_eq!(message.value.as_str().as_deref(), Some("hello shard"));
    println!("sharded message received from {}", message.server);

    subscriber.quit().await?;
    client.quit().await?;
    node.quit().await?;
    Ok(())
}

/// A plain client of one node, for the node-local commands (`CLUSTER NODES`, `KEYS`).
async fn centralized(port: u16) -> anyhow::Result<Client> {
    let client = Client::new(
        Config::from_url(&format!("redis://127.0.0.1:{port}"))?,
        None,
        None,
        None,
    );
    client.init().await?;
    Ok(client)
}

fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, None, false)
}
