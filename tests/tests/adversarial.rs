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

/// Closes every pub/sub connection of Redis, as a Redis restart or a network blip would.
async fn kill_subscribers(redis: &RedisClient) -> anyhow::Result<()> {
    let killed: i64 = redis
        .custom(
            CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false),
            vec!["KILL", "TYPE", "pubsub"],
        )
        .await?;
    println!("CLIENT KILL TYPE pubsub closed {killed} connections");
    Ok(())
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

/// The value of metric `name` on the line that carries `label`.
async fn labelled_metric(node: &ChatNode, name: &str, label: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(node.url("/metrics")).await?.text().await?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .ok_or_else(|| anyhow::anyhow!("no metric {name} with {label}"))?;
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
    kill_subscribers(&admin).await?;
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

/// One receiver's view of a room through every connection it needed: the seqs it holds, and how
/// often the node disconnected it.
#[derive(Default)]
struct ReceiverView {
    seqs: std::collections::BTreeSet<u64>,
    disconnects: u32,
}

/// A receiver that never looks at seq gaps: it rejoins (with `since`) only when its node
/// disconnects it, so a loss the node does not own up to stays a loss.
async fn receive_until(
    port: u16,
    id: &str,
    room: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ReceiverView> {
    let mut got = ReceiverView::default();
    let mut epoch: Option<Value> = None;
    while !*stop.borrow() {
        let mut client = Client::connect(port, "/", auth(id), json!(1)).await?;
        let mut join = json!({ "room": room });
        if let (Some(epoch), Some(seq)) = (&epoch, got.seqs.last()) {
            join["since"] = json!({ "epoch": epoch, "seq": seq });
        }
        let ack = client.emit_with_ack("join", &[join]).await?;
        let ack = &ack[0];
        anyhow::ensure!(ack["ok"] == json!(true), "join failed: {ack}");
        if epoch.is_some() {
            anyhow::ensure!(ack["recovered"] == json!(true), "not recovered: {ack}");
        }
        for m in ack["history"].as_array().into_iter().flatten() {
            epoch = Some(m["epoch"].clone());
            got.seqs.insert(m["seq"].as_u64().unwrap_or_default());
        }
        'connected: while !*stop.borrow() {
            for event in client.drain(Duration::from_millis(50)).await {
                match event {
                    Received::Event { name, args } if name == "message" => {
                        epoch = Some(args[0]["epoch"].clone());
                        got.seqs.insert(args[0]["seq"].as_u64().unwrap_or_default());
                    }
                    Received::Disconnected => {
                        got.disconnects += 1;
                        break 'connected;
                    }
                    Received::Event { .. } => {}
                }
            }
        }
    }
    Ok(got)
}

/// Sends `n` messages to `room` on the node at `port`, reconnecting whenever its node
/// disconnects it, retrying with the same `clientId` until acked; returns the acked seqs.
async fn send_acked(port: u16, id: &str, room: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let mut acked = Vec::new();
    let mut client: Option<Client> = None;
    for i in 0..n {
        let message =
            json!({ "room": room, "text": format!("{id} {i}"), "clientId": format!("{id}-{i}") });
        loop {
            let c = match &mut client {
                Some(c) if c.disconnected_at().is_none() => c,
                _ => {
                    let mut c = Client::connect(port, "/", auth(id), json!(1)).await?;
                    join(&mut c, room).await?;
                    client.insert(c)
                }
            };
            match c
                .emit_with_ack("message", std::slice::from_ref(&message))
                .await
            {
                Ok(ack) if ack[0]["ok"] == json!(true) => {
                    acked.push(ack[0]["message"]["seq"].as_u64().unwrap_or_default());
                    break;
                }
                _ => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    Ok(acked)
}

/// Defect (self-protection 3): a node whose subscriber reconnected told its clients to resync as
/// soon as the connection was back, before its subscriptions were, so what was published in
/// between reached nobody on that node and nobody was told. Under chat load, the subscriber
/// connections are killed three times: every receiver either got every acked message live or
/// was disconnected and recovered the rest with `since`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_kills_under_load_leave_no_receiver_missing_an_acked_message()
-> anyhow::Result<()> {
    init_tracing();
    let redis = TestRedis::start().await?;
    // Separate processes, as in production: each node's subscriber is its own.
    let env = [
        ("REDIS_URL", redis.url()),
        ("REDIS_KEY", unique_key("subkill")),
        ("RATE_LIMIT_PER_SEC", "100".into()),
        ("HISTORY_LEN", "10000".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let nodes = [
        NodeProcess::start("subkill-a", free_port()?, &env).await?,
        NodeProcess::start("subkill-b", free_port()?, &env).await?,
    ];
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let receivers: Vec<_> = (0..2)
        .map(|i| {
            let (port, stopped) = (nodes[1].port, stopped.clone());
            tokio::spawn(
                async move { receive_until(port, &format!("rx{i}"), "load", stopped).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let senders: Vec<_> = (0..5)
        .map(|i| {
            let port = nodes[0].port;
            tokio::spawn(async move { send_acked(port, &format!("tx{i}"), "load", 60).await })
        })
        .collect();
    let admin = redis_client(&redis).await?;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        kill_subscribers(&admin).await?;
    }
    let mut acked = std::collections::BTreeSet::new();
    for sender in senders {
        acked.extend(sender.await??);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true)?;
    let mut reconnects = 0.0;
    for node in &nodes {
        let text = reqwest::get(format!("{}/metrics", node.url()))
            .await?
            .text()
            .await?;
        reconnects += text
            .lines()
            .find(|l| l.starts_with("redis_reconnects_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_default();
    }
    println!(
        "{} messages acked; subscriber reconnects {reconnects}",
        acked.len()
    );
    for (i, receiver) in receivers.into_iter().enumerate() {
        let got = receiver.await??;
        let missing: Vec<_> = acked.difference(&got.seqs).collect();
        println!(
            "rx{i}: {} messages held, disconnected {} times, missing {}",
            got.seqs.len(),
            got.disconnects,
            missing.len()
        );
        assert!(
            missing.is_empty(),
            "rx{i} misses acked messages {missing:?}"
        );
    }
    assert!(
        reconnects >= 6.0,
        "both subscribers reconnected 3 times: {reconnects}"
    );
    Ok(())
}

/// Defect (self-protection 1): a connection that trickles its request headers (slowloris) was
/// never closed. 200 of them are closed within the header timeout and a second, while 100 clients
/// chat through the same node undisturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_headers_are_cut_off_while_clients_chat() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HEADER_TIMEOUT: Duration = Duration::from_millis(1500);
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "slowloris", 1, |c| {
        c.http_header_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
    })
    .await?;
    let port = nodes[0].port;
    let started = Instant::now();
    let slow: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                tcp.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
                    .await?;
                let opened = Instant::now();
                // One header byte every 200 ms, never the end of the headers.
                let mut buf = [0u8; 64];
                for b in std::iter::repeat_n(b'x', 1000) {
                    tokio::select! {
                        read = tcp.read(&mut buf) => {
                            if matches!(read, Ok(0) | Err(_)) {
                                return anyhow::Ok(opened.elapsed());
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(200)) => {
                            if tcp.write_all(&[b]).await.is_err() {
                                return Ok(opened.elapsed());
                            }
                        }
                    }
                }
                anyhow::bail!("slow connection {i} was never closed")
            })
        })
        .collect();
    let mut clients = Vec::new();
    for i in 0..100 {
        let mut client = Client::connect(port, "/", auth(&format!("u{i}")), json!(1)).await?;
        join(&mut client, "busy").await?;
        clients.push(client);
    }
    let sent_at = Instant::now();
    let ack = clients[0]
        .emit_with_ack(
            "message",
            &[json!({ "room": "busy", "text": "still here" })],
        )
        .await?;
    assert_eq!(ack[0]["ok"], json!(true));
    for client in &mut clients {
        assert_eq!(
            client.event("message").await?[0]["text"],
            json!("still here")
        );
    }
    println!(
        "100 clients joined and heard a message {:?} after it was sent, {:?} into the attack",
        sent_at.elapsed(),
        started.elapsed()
    );
    let mut slowest = Duration::ZERO;
    for conn in slow {
        slowest = slowest.max(conn.await??);
    }
    println!("200 slowloris connections closed, the last after {slowest:?}");
    assert!(slowest <= HEADER_TIMEOUT + Duration::from_secs(1));
    let cut = labelled_metric(&nodes[0], "http_timeouts_total", "phase=\"headers\"").await?;
    assert!(cut >= 200.0, "{cut} header timeouts counted");
    for client in &mut clients {
        let events = client.drain(Duration::from_millis(50)).await;
        assert!(
            !events.contains(&Received::Disconnected),
            "a chatting client was cut off"
        );
    }
    Ok(())
}

/// Defect (self-protection 2): a node admitted connections without bound. With
/// `MAX_CONNECTIONS` 100, a flood of 150 keeps exactly 100, refuses 50 with 503 and
/// `Retry-After` before any upgrade, turns `/readyz` not-ready at the high-water mark and ready
/// again below the low one, and takes clients again once places are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_past_max_connections_is_refused_exactly() -> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "flood", 1, |c| {
        c.max_connections = Some(100);
        c.ready_high_water_percent = 90;
        c.ready_low_water_percent = 80;
    })
    .await?;
    let node = &nodes[0];
    let http = reqwest::Client::new();
    let ready = || async {
        http.get(node.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    let attempts = join_all(
        (0..150).map(|i| Client::connect(node.port, "/", auth(&format!("f{i}")), json!(1))),
    )
    .await;
    let (mut admitted, refused): (Vec<_>, Vec<_>) = attempts.into_iter().partition(Result::is_ok);
    println!("{} admitted, {} refused", admitted.len(), refused.len());
    assert_eq!(admitted.len(), 100);
    assert_eq!(refused.len(), 50);
    assert_eq!(ready().await?, 503, "full: not ready");
    // A refusal is cheap and says when to come back; a polling handshake is refused alike.
    let res = http
        .get(node.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await?;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(
        labelled_metric(node, "http_connections_refused_total", "reason=\"full\"").await?,
        51.0
    );
    // Down to 85: still not ready (above the low-water mark of 80); at 80, ready again.
    let mut admitted: Vec<Client> = admitted.drain(..).map(Result::unwrap).collect();
    for client in admitted.drain(..15) {
        client.close();
    }
    wait_until(|| async { node.chat.admission.open() == 85 }).await?;
    assert_eq!(ready().await?, 503);
    for client in admitted.drain(..5) {
        client.close();
    }
    wait_until(|| async { node.chat.admission.open() == 80 }).await?;
    assert_eq!(ready().await?, 200);
    // The existing clients still chat, and new ones get in.
    let mut newcomer = Client::connect(node.port, "/", auth("late"), json!(1)).await?;
    join(&mut newcomer, "hall").await?;
    join(&mut admitted[0], "hall").await?;
    newcomer
        .emit_with_ack("message", &[json!({ "room": "hall", "text": "hi" })])
        .await?;
    assert_eq!(admitted[0].event("message").await?[0]["text"], json!("hi"));
    Ok(())
}

/// Polls `probe` until it holds, for up to 5 s.
async fn wait_until<F, Fut>(probe: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !probe().await {
        anyhow::ensure!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Defect (self-protection 5): within the event rate limit, one sender of long messages to a
/// large room made its node write hundreds of MB/s, and a probe in another room waited up to
/// 1.7 s. A socket's messages may now cost `FANOUT_BYTES_PER_SEC` (size × recipients) sustained;
/// beyond, they are refused with `rate_limited`, and the other room keeps its latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sender_cannot_spend_more_than_its_fan_out_budget() -> anyhow::Result<()> {
    const BUDGET: f64 = 4_000_000.0;
    const RECEIVERS: usize = 200;
    let redis = TestRedis::start().await?;
    let nodes = nodes(&redis, "fanout", 1, |c| {
        c.fanout_bytes_per_sec = BUDGET;
        c.fanout_burst_bytes = BUDGET;
        c.rate_limit_per_sec = 1000.0;
        c.rate_limit_burst = 1000.0;
        c.max_message_len = 8000;
    })
    .await?;
    let port = nodes[0].port;
    let mut receivers = Vec::new();
    for i in 0..RECEIVERS {
        let mut client = Client::connect(port, "/", auth(&format!("r{i}")), json!(1)).await?;
        join(&mut client, "big").await?;
        receivers.push(client);
    }
    let mut sender = Client::connect(port, "/", auth("loud"), json!(1)).await?;
    join(&mut sender, "big").await?;
    let mut probe_tx = Client::connect(port, "/", auth("ptx"), json!(1)).await?;
    let mut probe_rx = Client::connect(port, "/", auth("prx"), json!(1)).await?;
    join(&mut probe_tx, "small").await?;
    join(&mut probe_rx, "small").await?;

    let long = "x".repeat(8000);
    let started = Instant::now();
    let loud = tokio::spawn(async move {
        let (mut accepted, mut refused) = (0u64, 0u64);
        while started.elapsed() < Duration::from_secs(3) {
            let ack = sender
                .emit_with_ack("message", &[json!({ "room": "big", "text": long })])
                .await?;
            if ack[0]["ok"] == json!(true) {
                accepted += 1;
            } else {
                anyhow::ensure!(ack[0]["error"]["code"] == json!("rate_limited"), "{ack:?}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        anyhow::Ok((accepted, refused))
    });
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let sent = Instant::now();
        probe_tx
            .emit_with_ack("message", &[json!({ "room": "small", "text": "probe" })])
            .await?;
        probe_rx.event("message").await?;
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (accepted, refused) = loud.await??;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let per_message = chat_server::fanout::cost(8000, RECEIVERS + 1);
    let spent = accepted as f64 * per_message;
    println!(
        "loud sender: {accepted} accepted, {refused} refused in {elapsed:.1} s: {:.1} MB/s of fan-out \
         (budget {:.1} MB/s + {:.1} MB burst); probe p99 {p99:?} over {} probes",
        spent / elapsed / 1e6,
        BUDGET / 1e6,
        BUDGET / 1e6,
        latencies.len()
    );
    assert!(refused > 0, "the budget refused nothing");
    assert!(
        spent <= BUDGET * (elapsed + 1.0) + per_message,
        "spent {spent} bytes"
    );
    assert!(p99 < Duration::from_millis(250), "probe p99 {p99:?}");
    // What was accepted reached every receiver.
    for receiver in &mut receivers[..3] {
        let got = receiver
            .events_within("message", Duration::from_millis(500))
            .await;
        assert_eq!(got.len() as u64, accepted);
    }
    Ok(())
}
