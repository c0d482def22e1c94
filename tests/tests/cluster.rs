//! Cluster behaviour across three nodes, each operation issued from every node to the others.
//! Every scenario runs on real Redis 7 (testcontainers) and on the in-memory driver.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use cluster_tests::{
    Checked, Client, Received, TestNode, TestRedis, init_tracing, test_config, unique_key,
};
use futures_util::StreamExt;
use serde_json::json;
use socketio_cluster::{
    ClusterConfig, ClusterError, Driver, MemoryDriver, MemoryHub, RedisDriver, RedisDriverConfig,
    Target,
};

const QUIET: Duration = Duration::from_millis(300);

async fn redis_nodes(
    test: &str,
    n: usize,
) -> anyhow::Result<(TestRedis, Vec<TestNode<RedisDriver>>)> {
    init_tracing();
    let redis = TestRedis::start().await?;
    let key = unique_key(test);
    let mut nodes = Vec::new();
    for i in 0..n {
        let url = redis.url();
        let config = test_config(&format!("node-{i}"), &key);
        nodes.push(
            TestNode::start(config, move || async move {
                Ok(RedisDriver::connect(RedisDriverConfig::new(url)).await?)
            })
            .await?,
        );
    }
    wait_for_membership(&nodes, n).await?;
    Ok((redis, nodes))
}

async fn memory_nodes(
    test: &str,
    n: usize,
    hub: MemoryHub,
) -> anyhow::Result<(MemoryHub, Vec<TestNode<MemoryDriver>>)> {
    init_tracing();
    let key = unique_key(test);
    let mut nodes = Vec::new();
    for i in 0..n {
        let hub = hub.clone();
        let config = test_config(&format!("node-{i}"), &key);
        nodes.push(TestNode::start(config, move || async move { Ok(hub.driver()) }).await?);
    }
    wait_for_membership(&nodes, n).await?;
    Ok((hub, nodes))
}

/// Waits until every node knows every other one.
async fn wait_for_membership<D: Driver>(nodes: &[TestNode<D>], n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while nodes.iter().any(|node| node.cluster.nodes().len() != n) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nodes did not discover each other"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn client<D: Driver>(node: &TestNode<D>, nsp: &str, name: &str, rooms: &[&str]) -> Client {
    let auth = json!({ "data": { "user": name }, "rooms": rooms });
    Client::connect(node.port, nsp, auth, json!(name))
        .await
        .expect("client connects")
}

macro_rules! on_both_drivers {
    ($scenario:ident, $nodes:expr) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() -> anyhow::Result<()> {
                let (_redis, nodes) = redis_nodes(stringify!($scenario), $nodes).await?;
                super::$scenario(&nodes).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() -> anyhow::Result<()> {
                let hub = MemoryHub::new();
                let (_hub, nodes) = memory_nodes(stringify!($scenario), $nodes, hub).await?;
                super::$scenario(&nodes).await
            }

            /// The sharded protocol (dynamic subscriptions), in memory.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory_sharded() -> anyhow::Result<()> {
                let hub = MemoryHub::sharded();
                let (_hub, nodes) = memory_nodes(stringify!($scenario), $nodes, hub).await?;
                super::$scenario(&nodes).await
            }
        }
    };
}

on_both_drivers!(room_broadcast_reaches_room_members_on_every_node, 3);
async fn room_broadcast_reaches_room_members_on_every_node<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut members = vec![
        client(&nodes[0], "/", "a", &["r"]).await,
        client(&nodes[1], "/", "b", &["r"]).await,
        client(&nodes[2], "/", "c", &["r"]).await,
    ];
    let mut outsider = client(&nodes[2], "/", "d", &["other"]).await;
    for (i, node) in nodes.iter().enumerate() {
        node.io
            .to("r")
            .emit("msg", &format!("from-{i}"))
            .await
            .check()?;
        for member in &mut members {
            assert_eq!(member.event("msg").await?, vec![json!(format!("from-{i}"))]);
        }
    }
    assert!(outsider.events_within("msg", QUIET).await.is_empty());
    Ok(())
}

on_both_drivers!(except_skips_excluded_rooms_cluster_wide, 3);
async fn except_skips_excluded_rooms_cluster_wide<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut vip0 = client(&nodes[0], "/", "x", &["r", "vip"]).await;
    let mut plain = client(&nodes[1], "/", "y", &["r"]).await;
    let mut vip2 = client(&nodes[2], "/", "z", &["r", "vip"]).await;
    for (i, node) in nodes.iter().enumerate() {
        node.io
            .to("r")
            .except("vip")
            .emit("msg", &i)
            .await
            .check()?;
        assert_eq!(plain.event("msg").await?, vec![json!(i)]);
    }
    assert!(vip0.events_within("msg", QUIET).await.is_empty());
    assert!(vip2.events_within("msg", Duration::ZERO).await.is_empty());
    Ok(())
}

on_both_drivers!(broadcast_to_everyone_reaches_every_node_but_the_sender, 3);
async fn broadcast_to_everyone_reaches_every_node_but_the_sender<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut clients = vec![
        client(&nodes[0], "/", "a", &[]).await,
        client(&nodes[1], "/", "b", &[]).await,
        client(&nodes[2], "/", "c", &[]).await,
    ];
    for (i, node) in nodes.iter().enumerate() {
        node.io.emit("all", &i).await.check()?;
        for c in &mut clients {
            assert_eq!(c.event("all").await?, vec![json!(i)]);
        }
    }
    // socket.broadcast(): everyone but the sender, whatever node they are on.
    clients[1].emit("shout", &[json!("hey")]);
    assert_eq!(clients[0].event("news").await?, vec![json!("hey")]);
    assert_eq!(clients[2].event("news").await?, vec![json!("hey")]);
    assert!(clients[1].events_within("news", QUIET).await.is_empty());
    Ok(())
}

on_both_drivers!(local_and_volatile_flags_are_honoured, 3);
async fn local_and_volatile_flags_are_honoured<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut here = client(&nodes[0], "/", "a", &[]).await;
    let mut there = client(&nodes[1], "/", "b", &[]).await;
    nodes[0].io.local().emit("local", &1).await.check()?;
    assert_eq!(here.event("local").await?, vec![json!(1)]);
    assert!(there.events_within("local", QUIET).await.is_empty());
    nodes[2].io.volatile().emit("volatile", &2).await.check()?;
    assert_eq!(here.event("volatile").await?, vec![json!(2)]);
    assert_eq!(there.event("volatile").await?, vec![json!(2)]);
    Ok(())
}

on_both_drivers!(broadcast_with_ack_collects_acks_from_every_node, 3);
async fn broadcast_with_ack_collects_acks_from_every_node<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let _clients = [
        client(&nodes[0], "/", "a", &["r"]).await,
        client(&nodes[1], "/", "b", &["r"]).await,
        client(&nodes[1], "/", "b2", &["r"]).await,
        client(&nodes[2], "/", "c", &["r"]).await,
    ];
    for node in nodes {
        let acks: Vec<_> = node
            .io
            .to("r")
            .timeout(Duration::from_secs(2))
            .emit_with_ack::<_, String>("ask", &"question")
            .await
            .check()?
            .collect()
            .await;
        let replies: BTreeSet<String> =
            acks.into_iter().map(|(_, ack)| ack.expect("ack")).collect();
        assert_eq!(
            replies,
            BTreeSet::from(["a", "b", "b2", "c"].map(String::from))
        );
    }
    Ok(())
}

on_both_drivers!(sockets_join_and_leave_apply_on_every_node, 3);
async fn sockets_join_and_leave_apply_on_every_node<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut p = client(&nodes[0], "/", "p", &["g"]).await;
    let mut q = client(&nodes[1], "/", "q", &["g"]).await;
    let mut s = client(&nodes[2], "/", "s", &[]).await;
    for (i, node) in nodes.iter().enumerate() {
        let room = format!("h{i}");
        node.io.within("g").join(room.clone()).await.check()?;
        nodes[(i + 1) % 3]
            .io
            .to(room.clone())
            .emit("h", &i)
            .await
            .check()?;
        assert_eq!(p.event("h").await?, vec![json!(i)]);
        assert_eq!(q.event("h").await?, vec![json!(i)]);
        nodes[(i + 2) % 3]
            .io
            .within("g")
            .leave(room.clone())
            .await
            .check()?;
        node.io.to(room).emit("h", &"after leave").await.check()?;
    }
    assert!(p.events_within("h", QUIET).await.is_empty());
    assert!(q.events_within("h", Duration::ZERO).await.is_empty());
    assert!(s.events_within("h", Duration::ZERO).await.is_empty());
    Ok(())
}

on_both_drivers!(disconnect_sockets_reaches_every_node, 3);
async fn disconnect_sockets_reaches_every_node<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut kicked0 = client(&nodes[0], "/", "k0", &["kick"]).await;
    let mut kicked1 = client(&nodes[1], "/", "k1", &["kick"]).await;
    let mut stays = client(&nodes[2], "/", "st", &["stay"]).await;
    nodes[2].io.within("kick").disconnect().await.check()?;
    kicked0.disconnected().await?;
    kicked1.disconnected().await?;
    nodes[0].io.emit("still-here", &1).await.check()?;
    assert_eq!(stays.event("still-here").await?, vec![json!(1)]);
    Ok(())
}

on_both_drivers!(
    a_client_that_cannot_keep_up_is_disconnected_never_left_with_a_gap,
    2
);
async fn a_client_that_cannot_keep_up_is_disconnected_never_left_with_a_gap<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut slow = client(&nodes[1], "/", "slow", &["flood"]).await;
    let mut near = client(&nodes[1], "/", "near", &["flood"]).await;
    let mut far = client(&nodes[0], "/", "far", &["flood"]).await;
    slow.pause_reading();
    // Big packets from the other node, until the slow client's buffer on node 1 overflowed,
    // then some more, which it must not get either.
    const AFTER: u64 = 20;
    let pad = "x".repeat(64 << 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut sent, mut until) = (0u64, None);
    while until.is_none_or(|n| sent < n) {
        nodes[0]
            .io
            .to("flood")
            .emit("flood", &(sent, &pad))
            .await
            .check()?;
        sent += 1;
        if until.is_none() && nodes[1].cluster.stats().evicted > 0 {
            until = Some(sent + AFTER);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no overflow after {sent} packets"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Those that keep up got everything, in order.
    for keeps_up in [&mut near, &mut far] {
        for i in 0..sent {
            assert_eq!(keeps_up.event("flood").await?[0], json!(i));
        }
    }
    // The slow one got a gapless beginning, then the disconnect, and nothing after it.
    slow.resume_reading();
    let received = slow.drain(Duration::from_secs(3)).await;
    let got: Vec<u64> = received
        .iter()
        .take_while(|r| !matches!(r, Received::Disconnected))
        .filter_map(|r| match r {
            Received::Event { name, args } if name == "flood" => args[0].as_u64(),
            _ => None,
        })
        .collect();
    assert!(
        received.contains(&Received::Disconnected),
        "the slow client was not disconnected"
    );
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>(), "a gap");
    let missed = sent - got.len() as u64;
    assert!(missed > AFTER, "missed {missed} of {sent}");
    let stats = nodes[1].cluster.stats();
    assert_eq!((stats.evicted, stats.undelivered), (1, missed), "{stats:?}");
    let left = nodes[0]
        .cluster
        .fetch_sockets("/", &Target::rooms(["flood"]))
        .await?;
    assert_eq!(left.len(), 2);
    Ok(())
}

on_both_drivers!(all_rooms_lists_rooms_of_every_node, 3);
async fn all_rooms_lists_rooms_of_every_node<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let _c = [
        client(&nodes[0], "/", "a", &["room-a"]).await,
        client(&nodes[1], "/", "b", &["room-b"]).await,
        client(&nodes[2], "/", "c", &["room-c", "room-a"]).await,
    ];
    for node in nodes {
        let rooms: BTreeSet<String> = node
            .io
            .rooms()
            .await?
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        for expected in ["room-a", "room-b", "room-c"] {
            assert!(
                rooms.contains(expected),
                "{expected} missing from {rooms:?}"
            );
        }
    }
    Ok(())
}

on_both_drivers!(
    fetch_sockets_returns_remote_sockets_with_data_and_handshake,
    3
);
async fn fetch_sockets_returns_remote_sockets_with_data_and_handshake<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let auth = json!({ "data": { "user": format!("u{i}") }, "rooms": ["f"] });
        let query = format!("userId=u{i}");
        clients.push(Client::connect_query(node.port, "/", auth, json!(i), &query).await?);
    }
    let _outside = client(&nodes[0], "/", "o", &["not-f"]).await;
    for node in nodes {
        let mut sockets = node
            .cluster
            .fetch_sockets("/", &Target::rooms(["f"]))
            .await?;
        sockets.sort_by(|a, b| a.data()["user"].as_str().cmp(&b.data()["user"].as_str()));
        assert_eq!(sockets.len(), 3);
        for (i, s) in sockets.iter().enumerate() {
            assert_eq!(s.id(), clients[i].id);
            assert_eq!(*s.data(), json!({ "user": format!("u{i}") }));
            assert_eq!(s.node(), Some(nodes[i].name.as_str()));
            assert!(s.rooms().iter().any(|r| r == "f") && s.rooms().iter().any(|r| r == s.id()));
            assert_eq!(s.handshake().address, "127.0.0.1");
            assert_eq!(s.handshake().query["userId"], json!(format!("u{i}")));
            assert_eq!(s.handshake().query["EIO"], json!("4"));
            assert!(s.handshake().issued > 0);
            assert!(s.handshake().auth.is_empty(), "auth never leaves the node");
        }
        let except = node
            .cluster
            .fetch_sockets("/", &Target::rooms(["f"]).except([clients[1].id.clone()]))
            .await?;
        assert_eq!(except.len(), 2);
    }
    // socketioxide's own fetch_sockets is cluster-wide too, and its remote sockets are usable.
    let remote = nodes[0].io.within("f").fetch_sockets().await.check()?;
    assert_eq!(remote.len(), 3);
    let on_node_2 = remote
        .into_iter()
        .find(|s| s.data().id.to_string() == clients[2].id)
        .unwrap();
    on_node_2.emit("direct", &"just you").await.check()?;
    assert_eq!(clients[2].event("direct").await?, vec![json!("just you")]);
    assert!(clients[1].events_within("direct", QUIET).await.is_empty());
    Ok(())
}

on_both_drivers!(server_count_counts_every_node, 3);
async fn server_count_counts_every_node<D: Driver>(nodes: &[TestNode<D>]) -> anyhow::Result<()> {
    for node in nodes {
        assert_eq!(node.cluster.server_count("/").await?, 3);
        let names: BTreeSet<String> = node.cluster.nodes().into_iter().map(|n| n.name).collect();
        assert_eq!(
            names,
            BTreeSet::from(["node-0", "node-1", "node-2"].map(String::from))
        );
    }
    Ok(())
}

on_both_drivers!(
    server_side_emit_reaches_other_nodes_with_and_without_acks,
    3
);
async fn server_side_emit_reaches_other_nodes_with_and_without_acks<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    nodes[0]
        .cluster
        .server_side_emit("/", "hello", vec![json!(1), json!("x")])
        .await?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while nodes[1..]
        .iter()
        .any(|n| n.server_events.lock().unwrap().is_empty())
    {
        anyhow::ensure!(Instant::now() < deadline, "server-side event not received");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in &nodes[1..] {
        let events = node.server_events.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "hello");
        assert_eq!(events[0].args, vec![json!(1), json!("x")]);
        assert_eq!(events[0].from.as_deref(), nodes[0].cluster.uid());
    }
    assert!(
        nodes[0].server_events.lock().unwrap().is_empty(),
        "the sender does not hear itself"
    );
    let acks = nodes[2]
        .cluster
        .server_side_emit_with_ack("/", "ping", vec![])
        .await
        .check()?;
    let acked_by: BTreeSet<String> = acks
        .iter()
        .map(|a| a["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        acked_by,
        BTreeSet::from(["node-0", "node-1"].map(String::from))
    );
    Ok(())
}

on_both_drivers!(dynamic_namespaces_are_cluster_wide_and_isolated, 3);
async fn dynamic_namespaces_are_cluster_wide_and_isolated<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut a = client(&nodes[0], "/dyn-a", "a", &["r"]).await;
    let mut c = client(&nodes[2], "/dyn-a", "c", &["r"]).await;
    let mut root = client(&nodes[2], "/", "root", &["r"]).await;
    let mut other = client(&nodes[1], "/dyn-b", "other", &["r"]).await;
    let ns = nodes[0]
        .io
        .of("/dyn-a")
        .expect("namespace exists on node 0");
    ns.to("r").emit("msg", &"dyn").await.check()?;
    assert_eq!(a.event("msg").await?, vec![json!("dyn")]);
    assert_eq!(c.event("msg").await?, vec![json!("dyn")]);
    assert!(root.events_within("msg", QUIET).await.is_empty());
    assert!(other.events_within("msg", Duration::ZERO).await.is_empty());
    // Node 1 has no socket in /dyn-a and can still ask the nodes that have.
    let sockets = nodes[1]
        .cluster
        .fetch_sockets("/dyn-a", &Target::all())
        .await?;
    let ids: BTreeSet<String> = sockets.into_iter().map(|s| s.id().to_owned()).collect();
    assert_eq!(ids, BTreeSet::from([a.id.clone(), c.id.clone()]));
    assert_eq!(nodes[1].cluster.server_count("/dyn-a").await?, 3);
    Ok(())
}

on_both_drivers!(fetch_sockets_answers_promptly_after_a_node_crash, 3);
async fn fetch_sockets_answers_promptly_after_a_node_crash<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let _a = client(&nodes[0], "/", "a", &["r"]).await;
    let _b = client(&nodes[1], "/", "b", &["r"]).await;
    let _c = client(&nodes[2], "/", "c", &["r"]).await;
    let crashed_name = nodes[2].name.clone();
    let mut survivors_events = [
        nodes[0].cluster.node_events(),
        nodes[1].cluster.node_events(),
    ];
    // Node 2 dies without a goodbye.
    nodes[2].crash();
    let detected = Instant::now();
    for events in &mut survivors_events {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await?? {
                socketio_cluster::NodeEvent::Left {
                    node,
                    crashed: true,
                } if node.name == crashed_name => break,
                _ => continue,
            }
        }
    }
    assert!(
        detected.elapsed() < Duration::from_secs(3),
        "death detected in {:?}",
        detected.elapsed()
    );
    let started = Instant::now();
    let sockets = nodes[0]
        .cluster
        .fetch_sockets("/", &Target::rooms(["r"]))
        .await?;
    let took = started.elapsed();
    assert_eq!(sockets.len(), 2);
    assert!(
        took < Duration::from_millis(500),
        "fetchSockets took {took:?}"
    );
    assert_eq!(nodes[1].cluster.server_count("/").await?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_socket_of_a_dynamic_namespace_is_connected_only_once_the_node_hears_it()
-> anyhow::Result<()> {
    // Subscriptions that take a while to land, as on a remote Redis: socketioxide connects a
    // dynamic namespace's first socket before its node has subscribed the namespace.
    let hub = MemoryHub::with_subscribe_delay(Duration::from_millis(300));
    let (_hub, nodes) = memory_nodes("first_dyn", 2, hub).await?;
    let _sender = client(&nodes[0], "/dyn-first", "s", &[]).await;
    let mut first = client(&nodes[1], "/dyn-first", "f", &["r"]).await;
    let ns = nodes[0]
        .io
        .of("/dyn-first")
        .expect("namespace exists on node 0");
    ns.to("r").emit("msg", &1).await.check()?;
    assert_eq!(first.event("msg").await?, vec![json!(1)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_clients_are_told_to_resync_and_broadcasts_resume_within_two_seconds()
-> anyhow::Result<()> {
    let (redis, nodes) = redis_nodes("redis_restart", 2).await?;
    let mut member = client(&nodes[1], "/", "m", &["r"]).await;
    nodes[0].io.to("r").emit("before", &0).await.check()?;
    member.event("before").await?;
    let mut node_events: Vec<_> = nodes.iter().map(|n| n.cluster.node_events()).collect();
    redis.restart().await?;
    let back = Instant::now();
    // Whatever was published while the subscriber was away is lost to its node: its clients are
    // disconnected, which tells a Socket.IO client to reconnect and catch up.
    member.disconnected().await?;
    let mut member = client(&nodes[1], "/", "m", &["r"]).await;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let _ = nodes[0].io.to("r").emit("after", &attempt).await;
        if !member
            .events_within("after", Duration::from_millis(100))
            .await
            .is_empty()
        {
            break;
        }
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(2),
            "no broadcast got through 2 s after the restart"
        );
    }
    println!(
        "broadcasts resumed {:?} after Redis came back",
        back.elapsed()
    );
    // A node's publisher may be back before its subscriber counts the reconnect: every node
    // must count one within the same 2 s.
    while !nodes.iter().all(|n| n.cluster.stats().reconnects >= 1) {
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(2),
            "a node's subscriber did not reconnect within 2 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Cluster requests work again too, and reach every node: the outage, longer than the node
    // timeout, made no node declare another dead.
    assert_eq!(
        nodes[0]
            .cluster
            .fetch_sockets("/", &Target::rooms(["r"]))
            .await?
            .len(),
        1
    );
    for events in &mut node_events {
        while let Ok(event) = events.try_recv() {
            anyhow::ensure!(
                !matches!(event, socketio_cluster::NodeEvent::Left { .. }),
                "a Redis restart passed for a node's death: {event:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscriber_makes_requests_fail_with_a_timeout_naming_it() -> anyhow::Result<()> {
    let (hub, nodes) = memory_nodes("silent", 2, MemoryHub::new()).await?;
    // A node that subscribed to the namespace (so NUMSUB counts it) but never answers and never
    // sent a heartbeat: a hung Node.js node, as far as the cluster can tell.
    let silent = hub.driver();
    let key = nodes[0].cluster.config().key.clone();
    silent
        .subscribe(vec![format!("{key}-request#/#")], vec![])
        .await?;
    let started = Instant::now();
    let err = nodes[0]
        .cluster
        .fetch_sockets("/", &Target::all())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::Timeout { foreign: 1, ref nodes, .. } if nodes.is_empty()),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(nodes[0].cluster.stats().request_timeouts, 1);
    drop(silent);
    assert!(
        nodes[0]
            .cluster
            .fetch_sockets("/", &Target::all())
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_and_ignored() -> anyhow::Result<()> {
    let (hub, nodes) = memory_nodes("malformed", 2, MemoryHub::new()).await?;
    let mut member = client(&nodes[1], "/", "m", &["r"]).await;
    let rogue = hub.driver();
    let key = nodes[0].cluster.config().key.clone();
    rogue
        .publish(format!("{key}#/#"), b"\xc1garbage".to_vec())
        .await?;
    rogue
        .publish(format!("{key}-request#/#"), b"{not json".to_vec())
        .await?;
    rogue
        .publish(format!("{key}-heartbeat#"), vec![0x93, 1, 2, 3])
        .await?;
    nodes[0].io.to("r").emit("ok", &1).await.check()?;
    assert_eq!(member.event("ok").await?, vec![json!(1)]);
    assert!(nodes[1].cluster.stats().malformed >= 3);
    Ok(())
}

/// A well-formed broadcast larger than `max_inbound_bytes` is dropped before decoding, counted
/// and logged; smaller ones still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_above_max_inbound_bytes_are_dropped() -> anyhow::Result<()> {
    let hub = MemoryHub::new();
    let key = unique_key("inbound");
    let mut nodes = Vec::new();
    for i in 0..2 {
        let hub = hub.clone();
        let config = ClusterConfig {
            max_inbound_bytes: 4096,
            ..test_config(&format!("node-{i}"), &key)
        };
        nodes.push(TestNode::start(config, move || async move { Ok(hub.driver()) }).await?);
    }
    wait_for_membership(&nodes, 2).await?;
    let mut member = client(&nodes[1], "/", "m", &["r"]).await;
    let before = nodes[1].cluster.stats().malformed;
    nodes[0]
        .io
        .to("r")
        .emit("big", &"x".repeat(8192))
        .await
        .check()?;
    nodes[0].io.to("r").emit("small", &1).await.check()?;
    let names: Vec<String> = member
        .drain(QUIET)
        .await
        .into_iter()
        .filter_map(|r| match r {
            cluster_tests::Received::Event { name, .. } => Some(name),
            cluster_tests::Received::Disconnected => None,
        })
        .collect();
    assert_eq!(names, ["small"]);
    assert_eq!(nodes[1].cluster.stats().malformed, before + 1);
    Ok(())
}

on_both_drivers!(cluster_api_works_from_a_node_without_the_namespace, 3);
async fn cluster_api_works_from_a_node_without_the_namespace<D: Driver>(
    nodes: &[TestNode<D>],
) -> anyhow::Result<()> {
    let mut a = client(&nodes[0], "/dyn-a", "a", &["r"]).await;
    let mut c = client(&nodes[2], "/dyn-a", "c", &["r", "vip"]).await;
    let api = &nodes[1].cluster;
    assert!(
        nodes[1].io.of("/dyn-a").is_none(),
        "node 1 has no socket in /dyn-a"
    );

    api.emit(
        "/dyn-a",
        &Target::rooms(["r"]).except(["vip"]),
        "note",
        vec![json!("hi")],
    )
    .await?;
    assert_eq!(a.event("note").await?, vec![json!("hi")]);
    assert!(c.events_within("note", QUIET).await.is_empty());

    let acks = api
        .emit_with_ack(
            "/dyn-a",
            &Target::rooms(["r"]),
            "ask",
            vec![json!(1)],
            Duration::from_secs(2),
        )
        .await?;
    let acks: BTreeSet<String> = acks
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(acks, BTreeSet::from(["a".to_string(), "c".to_string()]));

    api.add_sockets("/dyn-a", &Target::rooms(["vip"]), vec!["z".into()])
        .await?;
    assert!(api.rooms("/dyn-a").await?.contains("z"));
    api.emit("/dyn-a", &Target::rooms(["z"]), "z", vec![])
        .await?;
    c.event("z").await?;
    assert!(a.events_within("z", QUIET).await.is_empty());
    api.del_sockets("/dyn-a", &Target::all(), vec!["z".into()])
        .await?;
    assert!(!api.rooms("/dyn-a").await?.contains("z"));

    api.disconnect_sockets("/dyn-a", &Target::rooms(["vip"]), true)
        .await?;
    c.disconnected().await?;
    assert_eq!(api.fetch_sockets("/dyn-a", &Target::all()).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_on_the_shared_channel_work_too() -> anyhow::Result<()> {
    // publishOnSpecificResponseChannel off, as in older Node.js adapters: responses go to the
    // namespace's shared response channel and each node picks its own by request id.
    init_tracing();
    let redis = TestRedis::start().await?;
    let key = unique_key("shared_responses");
    let mut nodes = Vec::new();
    for i in 0..2 {
        let url = redis.url();
        let mut config = test_config(&format!("node-{i}"), &key);
        config.specific_response_channel = false;
        nodes.push(
            TestNode::start(config, move || async move {
                Ok(RedisDriver::connect(RedisDriverConfig::new(url)).await?)
            })
            .await?,
        );
    }
    wait_for_membership(&nodes, 2).await?;
    let _a = client(&nodes[0], "/", "a", &["r"]).await;
    let _b = client(&nodes[1], "/", "b", &["r"]).await;
    for node in &nodes {
        assert_eq!(
            node.cluster
                .fetch_sockets("/", &Target::rooms(["r"]))
                .await?
                .len(),
            2
        );
        let acks = node
            .cluster
            .emit_with_ack(
                "/",
                &Target::rooms(["r"]),
                "ask",
                vec![],
                Duration::from_secs(2),
            )
            .await?;
        assert_eq!(acks.len(), 2);
        assert_eq!(
            node.cluster
                .server_side_emit_with_ack("/", "ping", vec![])
                .await?
                .len(),
            1
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_node_cannot_keep_up_with_are_counted_and_its_clients_disconnected()
-> anyhow::Result<()> {
    use fred::interfaces::{ClientLike, PubsubInterface};
    init_tracing();
    let redis = TestRedis::start().await?;
    let key = unique_key("lost");
    let url = redis.url();
    let slow_node = |name: &str, disconnect_on_loss: bool| {
        let mut driver_config = RedisDriverConfig::new(url.clone());
        driver_config.receive_buffer = 1;
        let config = ClusterConfig {
            disconnect_on_loss,
            ..test_config(name, &key)
        };
        TestNode::start(config, move || async move {
            Ok(RedisDriver::connect(driver_config).await?)
        })
    };
    let strict = slow_node("strict", true).await?;
    let tolerant = slow_node("tolerant", false).await?;
    let mut on_strict = client(&strict, "/", "s", &[]).await;
    let on_tolerant = client(&tolerant, "/", "t", &[]).await;
    // A burst far faster than the nodes read: one pipeline of 20 000 publishes.
    let publisher = RedisDriver::connect(RedisDriverConfig::new(url)).await?;
    let pipeline = publisher.client().pipeline();
    const BURST: u64 = 20_000;
    for i in 0..BURST {
        let (channel, junk) = (format!("{key}#/#"), format!("junk-{i}"));
        let () = if cluster_tests::redis::on_cluster() {
            pipeline.spublish(channel, junk).await?
        } else {
            pipeline.publish(channel, junk).await?
        };
    }
    let _: Vec<fred::types::Value> = pipeline.all().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in [&strict, &tolerant] {
        loop {
            let stats = node.cluster.stats();
            // Every message is either read (here: counted malformed) or counted lost.
            if stats.malformed + stats.lost >= BURST {
                assert!(stats.lost > 0, "a buffer of 1 must overflow: {stats:?}");
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "messages unaccounted for: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The client that may have missed broadcasts is told so by a disconnect; the other node
    // was configured to keep its clients, gap and all.
    on_strict.disconnected().await?;
    assert!(strict.cluster.stats().evicted >= 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(on_tolerant.disconnected_at(), None);
    assert_eq!(tolerant.cluster.stats().evicted, 0);
    publisher.client().quit().await?;
    Ok(())
}

/// A driver whose broadcasts wait until the gate opens, as if the pub/sub server stalled.
struct StalledBroadcasts {
    inner: MemoryDriver,
    /// Channels starting with this are broadcasts (`{key}#`); heartbeats and requests pass.
    broadcasts: String,
    gate: tokio::sync::watch::Receiver<bool>,
}

impl Driver for StalledBroadcasts {
    fn sharded(&self) -> bool {
        self.inner.sharded()
    }

    async fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), socketio_cluster::DriverError> {
        if channel.starts_with(&self.broadcasts) {
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
        }
        self.inner.publish(channel, payload).await
    }

    async fn subscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), socketio_cluster::DriverError> {
        self.inner.subscribe(channels, patterns).await
    }

    async fn unsubscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), socketio_cluster::DriverError> {
        self.inner.unsubscribe(channels, patterns).await
    }

    async fn num_sub(
        &self,
        channels: Vec<String>,
    ) -> Result<Vec<u64>, socketio_cluster::DriverError> {
        self.inner.num_sub(channels).await
    }

    /// Requests go to the request channel, never stalled.
    async fn num_sub_then_publish(
        &self,
        probe: Vec<String>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u64>, socketio_cluster::DriverError> {
        self.inner
            .num_sub_then_publish(probe, channel, payload)
            .await
    }

    fn incoming(&self) -> socketio_cluster::IncomingStream {
        self.inner.incoming()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_that_pile_up_are_refused_beyond_the_limit_not_queued_without_bound()
-> anyhow::Result<()> {
    init_tracing();
    let hub = MemoryHub::new();
    let key = unique_key("overload");
    let (open, gate) = tokio::sync::watch::channel(false);
    let config = ClusterConfig {
        max_pending_broadcasts: 2,
        ..test_config("busy", &key)
    };
    let busy = {
        let (hub, broadcasts) = (hub.clone(), format!("{key}#"));
        TestNode::start(config, move || async move {
            Ok(StalledBroadcasts {
                inner: hub.driver(),
                broadcasts,
                gate,
            })
        })
        .await?
    };
    let other = {
        let hub = hub.clone();
        TestNode::start(test_config("other", &key), move || async move {
            Ok(hub.driver())
        })
        .await?
    };
    wait_for_membership(std::slice::from_ref(&busy), 2).await?;
    wait_for_membership(std::slice::from_ref(&other), 2).await?;
    let mut local = client(&busy, "/", "local", &[]).await;
    let mut remote = client(&other, "/", "remote", &[]).await;

    // Two broadcasts wait for the stalled server and hold the two slots…
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let io = busy.io.clone();
            tokio::spawn(async move { io.emit("n", &i).await })
        })
        .collect();
    tokio::time::sleep(QUIET).await;
    // …so a third fails at once, and reaches nobody, with the cluster's own error inside…
    let refused = busy.io.emit("n", &2).await;
    let err = refused.expect_err("a third broadcast must be refused");
    assert!(
        matches!(
            ClusterError::cause_of(&err),
            Some(ClusterError::Overloaded { pending: 2 })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("overloaded"), "{err}");
    // …and an application asking first is refused the same way, counted too…
    assert!(matches!(
        busy.cluster.ensure_capacity(),
        Err(ClusterError::Overloaded { .. })
    ));
    // …and so is the cluster's own emit (a departure notice, say), which reaches nobody either:
    // not even this node's sockets, though they need no Redis.
    assert!(matches!(
        busy.cluster
            .emit("/", &Target::all(), "n", vec![json!("refused")])
            .await,
        Err(ClusterError::Overloaded { .. })
    ));
    assert_eq!(busy.cluster.stats().rejected, 3);

    open.send(true)?;
    for emit in waiting {
        emit.await?.check()?;
    }
    busy.cluster.ensure_capacity()?;
    for c in [&mut local, &mut remote] {
        let mut got: Vec<serde_json::Value> = c
            .events_within("n", QUIET)
            .await
            .into_iter()
            .map(|args| args[0].clone())
            .collect();
        got.sort_by_key(|v| v.as_i64());
        assert_eq!(got, [json!(0), json!(1)]);
    }
    Ok(())
}
