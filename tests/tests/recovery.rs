//! No message lost or doubled from a user's view (`shared/PROTOCOL.md`, "Messages, order and
//! recovery"): chatters that retry with a `clientId` and rejoin with `since` end with every
//! message of their room exactly once, in `seq` order, though a node is killed without goodbye
//! under them; and concurrent senders on three nodes are seen in one order by everyone.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;
use cluster_tests::{
    Client, Received, TestRedis, chat_nodes,
    chatter::{Chatter, ChatterStats, check_room},
    init_tracing,
    process::{NodeProcess, free_port},
    unique_key,
};
use futures_util::future::join_all;
use serde_json::{Value, json};

const ROOMS: [&str; 3] = ["alpha", "beta", "gamma"];

/// A fresh client's view of a room's history (every message, as HISTORY_LEN is large enough).
async fn history(port: u16, room: &str) -> anyhow::Result<Vec<Value>> {
    let mut reader = Client::connect(port, "/", json!({ "userId": "reader" }), json!(1)).await?;
    let ack = reader
        .emit_with_ack("join", &[json!({ "room": room })])
        .await?;
    Ok(ack[0]["history"].as_array().context("a history")?.to_vec())
}

/// 30 chatters in 3 rooms on 3 binary nodes send with retry-until-acked while one node is killed
/// with SIGKILL and started again: every chatter ends with exactly its room's messages 1..n, each
/// acked send once, and the history agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_is_lost_or_doubled_when_a_node_is_killed_without_goodbye() -> anyhow::Result<()>
{
    init_tracing();
    let redis = TestRedis::start().await?;
    let (url, key) = (redis.url(), unique_key("recovery"));
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_KEY", key.as_str()),
        ("HISTORY_LEN", "1000"),
        ("NODE_TIMEOUT_MS", "2000"),
        ("LEAVE_GRACE_MS", "1000"),
    ];
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(NodeProcess::start(&format!("recovery-{i}"), free_port()?, &env).await?);
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let per_chatter = 12;
    let chatters = (0..30).map(|i| {
        // Each starts on a different node and moves on to the next one when its node dies.
        let mut order = ports.clone();
        order.rotate_left(i % 3);
        let room = ROOMS[i / 10];
        tokio::spawn(async move {
            let mut chatter = Chatter::join(&format!("c{i}"), room, order).await?;
            for m in 0..per_chatter {
                chatter.send(&format!("{room} c{i} m{m}")).await?;
                chatter.listen(Duration::from_millis(120)).await?;
            }
            chatter.listen(Duration::from_millis(500)).await?;
            chatter.catch_up().await?;
            anyhow::Ok(chatter)
        })
    });
    let chatters: Vec<_> = chatters.collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let victim = 1;
    nodes[victim].kill().await?;
    println!("killed node {victim} (SIGKILL) while 30 chatters send");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nodes[victim]
        .restart(&format!("recovery-{victim}"), &env)
        .await?;
    println!("node {victim} started again");

    let mut done = Vec::new();
    for handle in join_all(chatters).await {
        done.push(handle??);
    }
    let total = ChatterStats::total(&done);
    let mut messages = 0;
    for (r, room) in ROOMS.into_iter().enumerate() {
        let members: Vec<&Chatter> = done[r * 10..(r + 1) * 10].iter().collect();
        let n = check_room(room, &members, &history(ports[0], room).await?)?;
        assert_eq!(n, 10 * per_chatter, "{room}: every send is one message");
        messages += n;
    }
    println!(
        "{messages} messages in 3 rooms, each held exactly once and in order by all 30 chatters; {total}"
    );
    assert!(total.reconnects >= 10, "the victim's chatters reconnected");
    assert_eq!(total.unrecovered_joins, 0, "every rejoin recovered");
    Ok(())
}

/// Two clients never see two messages of a room in different orders: 6 senders on 3 nodes send
/// at once, and 9 listeners (3 per node) record the order in which live messages arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_three_nodes_are_seen_in_one_order_by_everyone() -> anyhow::Result<()>
{
    let redis = TestRedis::start().await?;
    let nodes = chat_nodes(&redis.url(), "order", 3, |c| {
        c.rate_limit_per_sec = 1000.0;
        c.rate_limit_burst = 1000.0;
    })
    .await?;
    let connect = |port: u16, name: String| async move {
        let mut client = Client::connect(port, "/", json!({ "userId": name }), json!(1)).await?;
        let ack = client
            .emit_with_ack("join", &[json!({ "room": "order" })])
            .await?;
        anyhow::ensure!(ack[0]["ok"] == json!(true), "join: {ack:?}");
        anyhow::Ok(client)
    };
    let mut listeners = Vec::new();
    for i in 0..9 {
        listeners.push(connect(nodes[i % 3].port, format!("listener{i}")).await?);
    }
    let mut senders = Vec::new();
    for i in 0..6 {
        senders.push(connect(nodes[i % 3].port, format!("sender{i}")).await?);
    }
    let per_sender = 40;
    let sent = join_all(senders.iter_mut().enumerate().map(|(i, s)| async move {
        let sends = (0..per_sender).map(|m| {
            json!({ "room": "order", "text": format!("s{i} m{m}"), "clientId": format!("s{i}-{m}") })
        });
        for payload in sends {
            let ack = s.emit_with_ack("message", &[payload]).await?;
            anyhow::ensure!(ack[0]["ok"] == json!(true), "send: {ack:?}");
        }
        anyhow::Ok(())
    }))
    .await;
    sent.into_iter().collect::<anyhow::Result<Vec<()>>>()?;

    let total = 6 * per_sender;
    let orders = join_all(listeners.iter_mut().map(|l| async move {
        let mut order: Vec<(u64, String)> = Vec::new();
        while order.len() < total {
            match l.drain(Duration::from_secs(2)).await.as_slice() {
                [] => break,
                received => order.extend(received.iter().filter_map(|r| match r {
                    Received::Event { name, args } if name == "message" => Some((
                        args[0]["seq"].as_u64()?,
                        args[0]["text"].as_str()?.to_string(),
                    )),
                    _ => None,
                })),
            }
        }
        order
    }))
    .await;

    // Every pair of messages in a different relative order between two listeners counts once.
    let reference: BTreeMap<&str, usize> = orders[0]
        .iter()
        .enumerate()
        .map(|(i, (_, text))| (text.as_str(), i))
        .collect();
    let mut differences = 0;
    for order in &orders {
        assert_eq!(order.len(), total, "every listener hears every message");
        let positions: Vec<usize> = order.iter().map(|(_, t)| reference[t.as_str()]).collect();
        for (i, a) in positions.iter().enumerate() {
            differences += positions[i + 1..].iter().filter(|b| *b < a).count();
        }
        let seqs: Vec<u64> = order.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "live messages arrive in seq order"
        );
    }
    println!(
        "{total} messages from 6 concurrent senders on 3 nodes, heard by 9 listeners: {differences} order differences"
    );
    assert_eq!(differences, 0);
    Ok(())
}

async fn joined(port: u16, user: &str, join: Value) -> anyhow::Result<(Client, Value)> {
    let mut client = Client::connect(port, "/", json!({ "userId": user }), json!(1)).await?;
    let mut ack = client.emit_with_ack("join", &[join]).await?;
    anyhow::ensure!(ack[0]["ok"] == json!(true), "join: {ack:?}");
    Ok((client, ack.swap_remove(0)))
}

/// A send whose ack was lost is retried on another node with the same clientId: the retry gets
/// the stored message and nobody hears it twice. When Redis loses the room's sequence, a new
/// epoch starts, and a client that asks for what came after the old one is told to start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_stored_message_and_a_lost_sequence_starts_a_new_epoch()
-> anyhow::Result<()> {
    use fred::{
        clients::Client as RedisClient, interfaces::ClientLike,
        types::config::Config as RedisConfig,
    };
    let redis = TestRedis::start().await?;
    let nodes = chat_nodes(&redis.url(), "retry", 2, |_| ()).await?;
    let room = json!({ "room": "r" });
    let (alice, _) = joined(nodes[0].port, "alice", room.clone()).await?;
    let (mut carol, _) = joined(nodes[1].port, "carol", room.clone()).await?;

    // The first attempt is stored and broadcast, but its sender never reads the ack.
    let send = json!({ "room": "r", "text": "once", "clientId": "c-1" });
    alice.emit("message", std::slice::from_ref(&send));
    let heard = carol.event("message").await?[0].clone();
    assert_eq!(
        (heard["seq"].clone(), heard["clientId"].clone()),
        (json!(1), json!("c-1"))
    );
    alice.close();
    // The retry comes from another connection, on the other node, as after a reconnect.
    let (mut alice, _) = joined(nodes[1].port, "alice", room.clone()).await?;
    let ack = alice
        .emit_with_ack("message", std::slice::from_ref(&send))
        .await?;
    assert_eq!(
        ack[0]["message"], heard,
        "the retry gets the stored message"
    );
    assert!(
        carol
            .events_within("message", Duration::from_millis(500))
            .await
            .is_empty(),
        "nobody hears a retry"
    );
    assert_eq!(nodes[1].chat.metrics.retries_deduplicated.get(), 1);
    // clientIds are the sender's own: the same one from another user is another message.
    let (mut bob, _) = joined(nodes[0].port, "bob", room.clone()).await?;
    let ack = bob.emit_with_ack("message", &[send]).await?;
    assert_eq!(ack[0]["message"]["seq"], json!(2));
    let old = ack[0]["message"]["epoch"].clone();

    // Redis loses everything: the room's sequence starts again in a new epoch.
    let admin = RedisClient::new(RedisConfig::from_url(&redis.url())?, None, None, None);
    admin.init().await?;
    admin.flushall_cluster().await?;
    let ack = bob
        .emit_with_ack("message", &[json!({ "room": "r", "text": "after" })])
        .await?;
    let after = ack[0]["message"].clone();
    assert_eq!(after["seq"], json!(1));
    assert_ne!(after["epoch"], old, "a new epoch");
    let (_, stale) = joined(
        nodes[1].port,
        "dave",
        json!({ "room": "r", "since": { "epoch": old, "seq": 2 } }),
    )
    .await?;
    assert_eq!(stale["recovered"], json!(false));
    assert_eq!(stale["history"], json!([after.clone()]));
    let (_, current) = joined(
        nodes[0].port,
        "erin",
        json!({ "room": "r", "since": { "epoch": after["epoch"], "seq": 1 } }),
    )
    .await?;
    assert_eq!(current["recovered"], json!(true));
    assert_eq!(current["history"], json!([]));
    println!(
        "a retry on another node returned seq 1 and was heard once; after FLUSHALL the room went from epoch {old} to {}; a join since the old epoch got recovered: false",
        after["epoch"]
    );
    Ok(())
}

/// Retry records are kept in two generations of one retry window each, rotated by Redis's clock:
/// a record is found for its whole window and forgotten once two newer generations have started.
/// (The chat's window is 10 minutes; here 1 s, with the history in Redis as the chat keeps it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_records_last_their_window_and_go_two_generations_later() -> anyhow::Result<()> {
    use chat_server::{
        history::{Draft, History},
        protocol::Member,
    };
    use socketio_cluster::{
        Cluster, ClusterConfig, Driver, RedisDriver, RedisDriverConfig, SubscriptionMode,
        keys::HistoryKeys,
    };
    let redis = TestRedis::start().await?;
    let driver = RedisDriver::connect(RedisDriverConfig::new(redis.url())).await?;
    let key = unique_key("records");
    // As the chat places them: with sharded pub/sub, in the slot of the room's channel.
    let keys = if driver.sharded() {
        HistoryKeys::in_slot_of(&key, SubscriptionMode::default())
    } else {
        HistoryKeys::new(&key)
    };
    let history = History::redis(
        driver.client().clone(),
        keys,
        100,
        3600,
        Duration::from_secs(1),
    );
    let config = ClusterConfig {
        key: key.clone(),
        ..ClusterConfig::default()
    };
    let cluster = Cluster::new(driver, config);
    let from = Member {
        id: "alice".into(),
        name: "Alice".into(),
    };
    let post = |text: &'static str, client_id: &'static str| {
        let (history, cluster, from) = (&history, &cluster, &from);
        async move {
            let draft = Draft {
                room: "r",
                from,
                text,
                ts: 1,
                client_id: Some(client_id),
            };
            let template = cluster.broadcast_template("/", "r", "message", &draft.with_holes()?)?;
            anyhow::Ok(history.post("/", &draft, &template).await?)
        }
    };
    let first = post("first", "c-1").await?;
    assert!(first.fresh);
    // However the generations fall, a record is found for its whole window…
    let mut retried = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(900) {
        let retry = post("first", "c-1").await?;
        assert!(
            !retry.fresh,
            "a retry {:?} after the first post",
            started.elapsed()
        );
        assert_eq!(retry.message, first.message);
        retried += 1;
        // Other senders' posts rotate the generations meanwhile.
        post("other", "c-other").await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …and forgotten once two generations have passed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    post("rotate", "c-2").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    post("rotate again", "c-3").await?;
    let late = post("first", "c-1").await?;
    assert!(late.fresh, "a record outlived two windows");
    println!(
        "{retried} retries within the window found the record; 2.3 s later the same clientId posted seq {}",
        late.message.seq
    );
    Ok(())
}
