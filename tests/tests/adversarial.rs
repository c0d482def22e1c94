//! Attacks and faults against `chat-server` nodes on Redis 7: what one client, or a bad day in
//! production, can make a node hold or do. Each test names the defect it guards against and prints
//! the figures it measured.

use std::time::{Duration, Instant};

use cluster_tests::{
    ADMIN_TOKEN, ChatNode, Client, Received, TestRedis, chat_nodes, init_tracing,
    process::{NodeProcess, free_port, signal},
    unique_key,
};
use fred::{
    clients::Client as RedisClient,
    interfaces::{ClientLike, KeysInterface, PubsubInterface},
    types::{ClusterHash, CustomCommand, config::Config as RedisConfig},
};
use futures_util::{SinkExt, StreamExt, future::join_all};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn nodes(
    redis: &TestRedis,
    test: &str,
    n: usize,
    tweak: impl Fn(&mut chat_server::Config),
) -> anyhow::Result<Vec<ChatNode>> {
    chat_nodes(&redis.url(), test, n, tweak).await
}

async fn redis_client(redis: &TestRedis) -> anyhow::Result<RedisClient> {
    let client = RedisClient::new(RedisConfig::from_url(&redis.url())?, None, None, None);
    client.init().await?;
    Ok(client)
}

/// Redis channels and patterns subscribed by anyone.
async fn subscriptions(redis: &RedisClient) -> anyhow::Result<(usize, u64)> {
    let channels: Vec<String> = redis.pubsub_channels("*").await?;
    let patterns: u64 = redis.pubsub_numpat().await?;
    Ok((channels.len(), patterns))
}

fn auth(id: &str) -> Value {
    json!({ "userId": id, "name": id })
}

async fn join(client: &mut Client, room: &str) -> anyhow::Result<Value> {
    let ack = client
        .emit_with_ack("join", &[json!({ "room": room })])
        .await?;
    Ok(ack[0].clone())
}

/// Opens one WebSocket and sends a connect packet for each namespace, as a client may multiplex
/// many namespaces on one connection; returns how many connect errors came back within `wait`.
async fn connect_packets(
    port: u16,
    nsps: &[String],
    auth: &Value,
    wait: Duration,
) -> anyhow::Result<usize> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.next().await;
    for nsp in nsps {
        ws.send(Message::text(format!("40{nsp},{auth}"))).await?;
    }
    let mut errors = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(text) = msg {
            if text.starts_with("44") {
                errors += 1;
            }
            if errors == nsps.len() {
                break;
            }
        }
    }
    Ok(errors)
}

async fn metric(node: &ChatNode, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(node.url("/metrics")).await?.text().await?;
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .ok_or_else(|| anyhow::anyhow!("no metric {name}"))?;
    Ok(line.rsplit(' ').next().unwrap_or("0").parse()?)
}

/// Defect 1: connect packets naming ever new namespaces, with or without credentials, used to
/// subscribe 4 channels each, list every name in every heartbeat, and keep them forever, until
/// Redis dropped the node's subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_flood_costs_redis_nothing_and_chat_across_nodes_goes_on() -> anyhow::Result<()>
{
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "nsflood", 2, |c| {
        c.auth_secret = Some("s3cret".into());
        c.max_namespaces = 8;
        c.namespace_idle_secs = 1;
    })
    .await?;
    let admin = redis_client(&redis).await?;
    let before = subscriptions(&admin).await?;

    // Without a token: 500 valid names and 20 names of 100 kB on one connection.
    let mut names: Vec<String> = (0..500).map(|i| format!("/flood-{i}")).collect();
    names.extend((0..20).map(|i| format!("/{i}{}", "x".repeat(100_000))));
    let refused =
        connect_packets(nodes[0].port, &names, &json!({}), Duration::from_secs(10)).await?;
    let after_flood = subscriptions(&admin).await?;
    println!(
        "namespace flood without a token: {refused} of {} connects refused; channels, patterns {before:?} -> {after_flood:?}",
        names.len()
    );
    assert_eq!(refused, names.len(), "every connect gets a connect error");
    assert_eq!(
        after_flood, before,
        "no subscription for refused namespaces"
    );

    // With a token: namespaces join the cluster up to MAX_NAMESPACES, then are refused.
    let now = jsonwebtoken::get_current_timestamp();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "mallory", "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
    )?;
    let legit: Vec<String> = (0..50).map(|i| format!("/legit-{i}")).collect();
    let refused = connect_packets(
        nodes[0].port,
        &legit,
        &json!({ "token": token }),
        Duration::from_secs(3),
    )
    .await?;
    let after_legit = subscriptions(&admin).await?;
    let heartbeat_nsps = nodes[1]
        .chat
        .cluster
        .nodes()
        .iter()
        .map(|n| n.nsps.len())
        .max();
    println!(
        "50 namespaces with a token: {refused} refused; channels, patterns -> {after_legit:?}; namespaces in heartbeats at most {heartbeat_nsps:?}"
    );
    assert_eq!(
        refused,
        50 - 7,
        "`/` and 7 more namespaces fit in MAX_NAMESPACES=8"
    );
    assert!(after_legit.1 <= before.1 + 7, "at most 7 more patterns");
    assert!(heartbeat_nsps <= Some(8));

    // Empty namespaces are released: their subscriptions go, and new ones fit again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let released = metric(&nodes[0], "chat_namespaces_released").await?;
    let after_release = subscriptions(&admin).await?;
    println!(
        "after the idle time: {released} namespaces released; channels, patterns -> {after_release:?}"
    );
    assert!(released >= 520.0);
    assert_eq!(after_release, before);

    // Through all of it, chat across the nodes works.
    let sign = |sub: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({ "sub": sub, "exp": now + 600 }),
            &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
        )
    };
    let mut alice = Client::connect(
        nodes[0].port,
        "/",
        json!({ "token": sign("alice")? }),
        json!(1),
    )
    .await?;
    let mut bob = Client::connect(
        nodes[1].port,
        "/",
        json!({ "token": sign("bob")? }),
        json!(1),
    )
    .await?;
    join(&mut alice, "lobby").await?;
    join(&mut bob, "lobby").await?;
    let ack = bob
        .emit_with_ack(
            "message",
            &[json!({ "room": "lobby", "text": "still here" })],
        )
        .await?;
    assert_eq!(ack[0]["ok"], json!(true));
    assert_eq!(
        alice.event("message").await?[0]["text"],
        json!("still here")
    );
    assert!(
        nodes[0].chat.cluster.stats().reconnects == 0,
        "the subscriber was never dropped"
    );
    Ok(())
}

/// Defect 2: concurrent first connects to a new namespace each built it, and the last one replaced
/// the others, whose sockets then heard nothing and lost their events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_to_a_new_namespace_all_join_and_hear_each_other()
-> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "burst", 2, |_| ()).await?;
    for trial in 0..20 {
        let nsp = format!("/burst-{trial}");
        let connects = (0..50).map(|i| {
            let port = nodes[i % 2].port;
            let nsp = nsp.clone();
            async move { Client::connect(port, &nsp, auth(&format!("u{i}")), json!(1)).await }
        });
        let mut clients = join_all(connects)
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        let joins = join_all(clients.iter_mut().map(|c| join(c, "r"))).await;
        let acked = joins
            .iter()
            .filter(|a| matches!(a, Ok(a) if a["ok"] == json!(true)))
            .count();
        assert_eq!(acked, 50, "trial {trial}: every join is acked");
        let ack = clients[0]
            .emit_with_ack(
                "message",
                &[json!({ "room": "r", "text": format!("t{trial}") })],
            )
            .await?;
        assert_eq!(ack[0]["ok"], json!(true));
        let heard = join_all(clients.iter_mut().map(|c| c.event("message"))).await;
        let delivered = heard
            .iter()
            .filter(|m| matches!(m, Ok(m) if m[0]["text"] == json!(format!("t{trial}"))))
            .count();
        assert_eq!(
            delivered, 50,
            "trial {trial}: every member hears the message"
        );
    }
    let races: u64 = nodes
        .iter()
        .map(|n| n.chat.cluster.stats().namespace_races)
        .sum();
    println!(
        "20 trials of 50 concurrent first connects: every join acked, every message delivered; {races} races resolved"
    );
    Ok(())
}

/// The resident memory of a process.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Defect 3: a client that never reads and rejoins a room with a big history made the node queue
/// the whole history at every join; one packet could be 64 MiB. Measured on a node process of its
/// own, so its memory is the node's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_costs_bounded_bytes() -> anyhow::Result<()> {
    init_tracing();
    let redis = TestRedis::start().await?;
    let port = free_port()?;
    let node = NodeProcess::start(
        "noread",
        port,
        &[
            ("REDIS_URL", &redis.url()),
            ("HISTORY_LEN", "500"),
            ("RATE_LIMIT_PER_SEC", "1000"),
            ("RATE_LIMIT_BURST", "1000"),
        ],
    )
    .await?;
    let pid = node.child.id().expect("a running node");
    let mut writer = Client::connect(port, "/", auth("writer"), json!(1)).await?;
    join(&mut writer, "big").await?;
    for i in 0..500 {
        let text = format!("{i:04}{}", "é".repeat(1990));
        writer
            .emit_with_ack("message", &[json!({ "room": "big", "text": text })])
            .await?;
    }
    let history_bytes: usize = 500 * 4000;
    let mut reader = Client::connect(port, "/", auth("reader"), json!(1)).await?;
    let ack = join(&mut reader, "big").await?;
    let ack_bytes = ack["history"].to_string().len();
    println!(
        "history of the room: ~{history_bytes} bytes; a join ack carries {ack_bytes} bytes of it"
    );
    assert!(
        ack_bytes <= 65_536 + 4096,
        "the join ack is bounded by HISTORY_ACK_BYTES"
    );
    assert!(!ack["history"].as_array().unwrap().is_empty());

    let before = rss_bytes(pid);
    let hog = Client::connect(port, "/", auth("hog"), json!(1)).await?;
    hog.pause_reading();
    for _ in 0..300 {
        hog.emit("join", &[json!({ "room": "big" })]);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = rss_bytes(pid).saturating_sub(before);
    println!(
        "a non-reading client sent 300 joins of a room with {history_bytes} bytes of history: node RSS {before} -> +{grown} bytes (the whole history each time would be {})",
        300 * history_bytes
    );
    // 300 acks of at most 64 KiB are 20 MB; the whole history each time would be 600 MB.
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");

    // One packet over MAX_PAYLOAD_BYTES ends the connection.
    let mut big = Client::connect(port, "/", auth("big"), json!(1)).await?;
    big.emit(
        "message",
        &[json!({ "room": "big", "text": "x".repeat(2_000_000) })],
    );
    big.disconnected().await?;
    Ok(())
}

/// Defect 6: every socket is in a room named by its id, so a chat room of that name reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_named_like_socket_ids_are_refused() -> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "sidroom", 2, |_| ()).await?;
    let mut victim = Client::connect(nodes[0].port, "/", auth("victim"), json!(1)).await?;
    let mut mallory = Client::connect(nodes[1].port, "/", auth("mallory"), json!(1)).await?;
    let ack = join(&mut mallory, &victim.id.clone()).await?;
    assert_eq!(ack["error"]["code"], json!("bad_request"), "{ack}");
    let ack = mallory
        .emit_with_ack(
            "message",
            &[json!({ "room": victim.id, "text": "injected" })],
        )
        .await?;
    assert_eq!(ack[0]["error"]["code"], json!("not_in_room"));
    assert!(
        victim
            .events_within("message", Duration::from_millis(300))
            .await
            .is_empty()
    );
    let res = reqwest::Client::new()
        .post(nodes[1].url("/api/sockets/join"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "target": { "userId": "mallory" }, "rooms": [victim.id] }))
        .send()
        .await?;
    assert_eq!(res.status(), 400, "the admin API refuses such rooms too");
    Ok(())
}

/// Defect 8: every change sent the full online list to the whole room: O(N³) bytes as it filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_updates_cost_linear_bytes_as_a_room_fills() -> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "presence", 2, |_| ()).await?;
    let n = 200;
    let mut first = Client::connect(nodes[0].port, "/", auth("u0"), json!(1)).await?;
    join(&mut first, "hall").await?;
    let mut others = Vec::new();
    for i in 1..n {
        let mut c =
            Client::connect(nodes[i % 2].port, "/", auth(&format!("u{i}")), json!(1)).await?;
        join(&mut c, "hall").await?;
        others.push(c);
    }
    let updates = first
        .events_within("presence", Duration::from_secs(2))
        .await;
    let bytes: usize = updates.iter().map(|u| u[0].to_string().len()).sum();
    let counts: Vec<u64> = updates
        .iter()
        .filter_map(|u| u[0]["count"].as_u64())
        .collect();
    println!(
        "{n} users joined one room: the first member received {} presence updates, {bytes} bytes in all (a full list per change would be ~{} bytes)",
        updates.len(),
        (1..n).map(|k| k * 30).sum::<usize>()
    );
    assert_eq!(updates.len(), n - 1);
    assert!(
        updates
            .iter()
            .all(|u| u[0]["joined"].as_array().map(Vec::len) == Some(1)
                && u[0].get("left").is_none())
    );
    assert_eq!(counts.last(), Some(&(n as u64)));
    assert!(bytes < n * 120, "O(N) bytes: {bytes}");
    Ok(())
}

/// Defect 5: when the pub/sub connection dropped, clients kept chatting without knowing they
/// missed broadcasts; `/readyz` stayed 200 with a frozen Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscriber_disconnects_clients_and_a_frozen_redis_is_not_ready()
-> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "pubsubkill", 2, |_| ()).await?;
    let mut alice = Client::connect(nodes[0].port, "/", auth("alice"), json!(1)).await?;
    let mut bob = Client::connect(nodes[1].port, "/", auth("bob"), json!(1)).await?;
    join(&mut alice, "lobby").await?;
    join(&mut bob, "lobby").await?;
    let admin = redis_client(&redis).await?;
    let killed: i64 = admin
        .custom(
            CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false),
            vec!["KILL", "TYPE", "pubsub"],
        )
        .await?;
    println!("CLIENT KILL TYPE pubsub closed {killed} connections");
    for client in [&mut alice, &mut bob] {
        client.disconnected().await?;
    }
    let reconnects: u64 = nodes
        .iter()
        .map(|n| n.chat.cluster.stats().reconnects)
        .sum();
    assert!(
        reconnects >= 2,
        "both subscribers reconnected: {reconnects}"
    );
    // Clients that connect again chat as before.
    let mut alice = Client::connect(nodes[0].port, "/", auth("alice"), json!(1)).await?;
    let mut bob = Client::connect(nodes[1].port, "/", auth("bob"), json!(1)).await?;
    join(&mut alice, "lobby").await?;
    join(&mut bob, "lobby").await?;
    bob.emit_with_ack("message", &[json!({ "room": "lobby", "text": "back" })])
        .await?;
    assert_eq!(alice.event("message").await?[0]["text"], json!("back"));

    let http = reqwest::Client::new();
    assert_eq!(
        http.get(nodes[0].url("/readyz")).send().await?.status(),
        200
    );
    let _: String = admin
        .custom(
            CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false),
            vec!["PAUSE", "3000", "ALL"],
        )
        .await?;
    let started = Instant::now();
    let status = http.get(nodes[0].url("/readyz")).send().await?.status();
    println!(
        "/readyz with a frozen Redis: {status} after {:?}",
        started.elapsed()
    );
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_millis(2500));
    Ok(())
}

/// Defect 9: history never expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_expires_after_the_rooms_last_message() -> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "ttl", 1, |c| c.history_ttl_secs = 120).await?;
    let mut alice = Client::connect(nodes[0].port, "/", auth("alice"), json!(1)).await?;
    join(&mut alice, "lobby").await?;
    alice
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hi" })])
        .await?;
    let admin = redis_client(&redis).await?;
    let keys: Vec<String> = admin
        .custom(
            CustomCommand::new_static("KEYS", ClusterHash::FirstKey, false),
            vec!["*history*"],
        )
        .await?;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let ttl: i64 = admin.ttl(&key).await?;
        assert!((1..=120).contains(&ttl), "{key}: {ttl}");
    }
    // A refused client never hurts others: drain what alice received.
    assert!(
        alice
            .drain(Duration::from_millis(50))
            .await
            .iter()
            .all(|r| *r != Received::Disconnected)
    );
    Ok(())
}

async fn online(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<String>> {
    let presence: Value = http
        .get(format!("{url}/api/rooms/lobby/presence"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let mut ids: Vec<String> = presence["online"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Defect 4: a node stalled past `NODE_TIMEOUT_MS` was reaped by the others and, once it resumed,
/// never registered its still-connected sockets again: its users chatted while absent from presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_past_the_node_timeout_registers_its_users_again() -> anyhow::Result<()> {
    init_tracing();
    let redis = TestRedis::start().await?;
    let (url, key) = (redis.url(), unique_key("sigstop"));
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_KEY", key.as_str()),
        ("NODE_TIMEOUT_MS", "1000"),
        ("LEAVE_GRACE_MS", "500"),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let staying = NodeProcess::start("awake", free_port()?, &env).await?;
    let stalled = NodeProcess::start("stalled", free_port()?, &env).await?;
    let mut bob = Client::connect(staying.port, "/", auth("bob"), json!(1)).await?;
    join(&mut bob, "lobby").await?;
    let mut alice = Client::connect(stalled.port, "/", auth("alice"), json!(1)).await?;
    join(&mut alice, "lobby").await?;
    assert_eq!(
        bob.notices(Duration::from_secs(1)).await,
        [("join".into(), "alice".into())]
    );

    signal(&stalled.child, "STOP").await?;
    let left = bob.notices(Duration::from_secs(4)).await;
    let http = reqwest::Client::new();
    let during = online(&http, &staying.url()).await?;
    signal(&stalled.child, "CONT").await?;
    let resumed = Instant::now();
    let back = bob.notices(Duration::from_secs(2)).await;
    let after = online(&http, &staying.url()).await?;
    println!(
        "SIGSTOP past the node timeout: bob saw {left:?}, presence {during:?}; after SIGCONT bob saw {back:?} within {:?}, presence {after:?}",
        resumed.elapsed()
    );
    assert_eq!(
        left,
        [("leave".into(), "alice".into())],
        "the stalled node's user was taken for gone"
    );
    assert_eq!(during, ["bob"]);
    assert_eq!(
        back,
        [("join".into(), "alice".into())],
        "and is announced back"
    );
    assert_eq!(after, ["alice", "bob"]);
    alice
        .emit_with_ack(
            "message",
            &[json!({ "room": "lobby", "text": "I never left" })],
        )
        .await?;
    assert_eq!(
        bob.event("message").await?[0]["text"],
        json!("I never left")
    );
    Ok(())
}

/// A Redis that lost its data (FLUSHALL, or a restart without persistence) used to leave
/// presence empty while everyone stayed connected; now every node registers its sockets again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_rebuilt_from_the_nodes_after_redis_loses_its_data() -> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "flushall", 2, |_| ()).await?;
    let mut alice = Client::connect(nodes[0].port, "/", auth("alice"), json!(1)).await?;
    let mut bob = Client::connect(nodes[1].port, "/", auth("bob"), json!(1)).await?;
    join(&mut alice, "lobby").await?;
    join(&mut bob, "lobby").await?;
    let mut carol = Client::connect(nodes[1].port, "/", auth("carol"), json!(1)).await?;
    join(&mut carol, "lobby").await?;
    carol.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let admin = redis_client(&redis).await?;
    let _: String = admin
        .custom(
            CustomCommand::new_static("FLUSHALL", ClusterHash::FirstKey, false),
            Vec::<String>::new(),
        )
        .await?;
    let http = reqwest::Client::new();
    let flushed = Instant::now();
    let mut now = online(&http, &nodes[0].url("")).await?;
    while now != ["alice", "bob"] && flushed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = online(&http, &nodes[0].url("")).await?;
    }
    println!(
        "after FLUSHALL presence was rebuilt in {:?}: {now:?}",
        flushed.elapsed()
    );
    assert_eq!(
        now,
        ["alice", "bob"],
        "rebuilt, and carol (gone) is no ghost"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(online(&http, &nodes[1].url("")).await?, ["alice", "bob"]);
    Ok(())
}
