//! The chat contract of `shared/PROTOCOL.md` on a cluster of `chat-server` nodes sharing Redis 7:
//! presence rules, history, errors, auth, namespaces, the admin API and graceful shutdown.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use cluster_tests::{
    ADMIN_TOKEN, Admin, ChatNode, Client, TestRedis, chat_config, chat_nodes, init_tracing,
};
use serde_json::{Value, json};

/// The grace of test nodes (see `chat_config`), and how long past it a timer may take to fire.
const GRACE: Duration = Duration::from_millis(800);
const SLACK: Duration = Duration::from_millis(700);

struct Cluster {
    redis: Option<TestRedis>,
    nodes: Vec<ChatNode>,
}

async fn cluster(
    test: &str,
    n: usize,
    tweak: impl Fn(&mut chat_server::Config),
) -> anyhow::Result<Cluster> {
    let redis = TestRedis::start().await?;
    let nodes = chat_nodes(&redis.url(), test, n, tweak).await?;
    Ok(Cluster {
        redis: Some(redis),
        nodes,
    })
}

async fn user<B: chat_server::backend::Backend>(node: &ChatNode<B>, nsp: &str, id: &str) -> Client {
    let auth = json!({ "userId": id, "name": format!("{id}-name") });
    Client::connect(node.port, nsp, auth, json!(id))
        .await
        .expect("connects")
}

async fn join(client: &mut Client, room: &str) -> Value {
    let ack = client
        .emit_with_ack("join", &[json!({ "room": room })])
        .await
        .expect("join ack");
    assert_eq!(ack[0]["ok"], json!(true), "join failed: {ack:?}");
    ack[0].clone()
}

fn online_ids(presence: &Value) -> Vec<String> {
    presence["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// A `presence` delta as (count, ids that joined, ids that left).
fn delta(presence: &Value) -> (u64, Vec<&str>, Vec<&str>) {
    let ids = |field: &str| {
        presence[field]
            .as_array()
            .map(|members| members.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default()
    };
    (
        presence["count"].as_u64().expect("a count"),
        ids("joined"),
        ids("left"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_returns_chatter_online_and_history_and_announces_once() -> anyhow::Result<()> {
    let c = cluster("join", 2, |_| ()).await?;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    let ack = join(&mut bob, "lobby").await;
    assert_eq!(ack["chatter"], json!({ "id": "bob", "name": "bob-name" }));
    assert_eq!(online_ids(&ack), vec!["bob"]);
    assert_eq!(ack["history"], json!([]));
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    let ack = join(&mut alice, "lobby").await;
    assert_eq!(online_ids(&ack), vec!["alice", "bob"]);
    let notice = bob.event("notice").await?;
    assert_eq!(notice[0]["kind"], json!("join"));
    assert_eq!(
        notice[0]["user"],
        json!({ "id": "alice", "name": "alice-name" })
    );
    assert!(notice[0]["ts"].as_u64().unwrap() > 0);
    let presence = bob.event("presence").await?;
    assert_eq!(presence[0]["room"], json!("lobby"));
    assert_eq!(delta(&presence[0]), (2, vec!["alice"], vec![]));
    // A second tab of alice changes nothing anyone sees.
    let mut alice2 = user(&c.nodes[1], "/", "alice").await;
    join(&mut alice2, "lobby").await;
    assert!(bob.notices(Duration::from_millis(400)).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_on_another_node_within_the_grace_announces_nothing() -> anyhow::Result<()> {
    let c = cluster("refresh", 2, |_| ()).await?;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    join(&mut bob, "lobby").await;
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    join(&mut alice, "lobby").await;
    bob.event("notice").await?;
    bob.event("presence").await?;
    alice.close();
    tokio::time::sleep(GRACE / 4).await;
    let mut alice = user(&c.nodes[1], "/", "alice").await;
    let ack = join(&mut alice, "lobby").await;
    assert_eq!(online_ids(&ack), vec!["alice", "bob"]);
    let seen = bob.drain(GRACE + SLACK).await;
    assert!(
        seen.iter().all(|r| !matches!(r, cluster_tests::Received::Event { name, .. } if name == "notice" || name == "presence")),
        "a refresh was announced: {seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_after_the_grace_is_announced_exactly_once() -> anyhow::Result<()> {
    let c = cluster("grace", 3, |_| ()).await?;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    let mut carol = user(&c.nodes[2], "/", "carol").await;
    join(&mut bob, "lobby").await;
    join(&mut carol, "lobby").await;
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    join(&mut alice, "lobby").await;
    bob.drain(Duration::from_millis(300)).await;
    carol.drain(Duration::ZERO).await;
    let closed = Instant::now();
    alice.close();
    let notice = bob
        .event_within("notice", GRACE + SLACK + Duration::from_secs(1))
        .await?;
    let waited = closed.elapsed();
    assert!(
        waited >= GRACE,
        "announced after {waited:?}, before the grace"
    );
    assert_eq!(
        (notice[0]["kind"].as_str(), notice[0]["user"]["id"].as_str()),
        (Some("leave"), Some("alice"))
    );
    let presence = bob.event("presence").await?;
    assert_eq!(delta(&presence[0]), (2, vec![], vec!["alice"]));
    // Exactly one notice and one presence update, cluster-wide.
    let later = bob.drain(GRACE * 2).await;
    assert!(later.is_empty(), "more announcements: {later:?}");
    assert_eq!(
        carol.notices(Duration::ZERO).await,
        vec![("leave".into(), "alice".into())]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_keep_a_user_online_until_the_last_one_goes() -> anyhow::Result<()> {
    let c = cluster("tabs", 2, |_| ()).await?;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    join(&mut bob, "lobby").await;
    let mut tab1 = user(&c.nodes[0], "/", "alice").await;
    let mut tab2 = user(&c.nodes[1], "/", "alice").await;
    join(&mut tab1, "lobby").await;
    join(&mut tab2, "lobby").await;
    assert_eq!(
        bob.notices(Duration::from_millis(300)).await,
        vec![("join".into(), "alice".into())]
    );
    tab1.close();
    assert!(
        bob.notices(GRACE + SLACK).await.is_empty(),
        "alice still has a tab open"
    );
    tab2.close();
    assert_eq!(
        bob.notices(GRACE + SLACK + Duration::from_millis(500))
            .await,
        vec![("leave".into(), "alice".into())]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_leave_is_announced_at_once() -> anyhow::Result<()> {
    let c = cluster("explicit", 2, |_| ()).await?;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    join(&mut bob, "lobby").await;
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    join(&mut alice, "lobby").await;
    bob.drain(Duration::from_millis(300)).await;
    let ack = alice
        .emit_with_ack("leave", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(ack[0], json!({ "ok": true }));
    let notice = bob.event_within("notice", GRACE / 2).await?;
    assert_eq!(notice[0]["kind"], json!("leave"));
    assert_eq!(
        delta(&bob.event("presence").await?[0]),
        (1, vec![], vec!["alice"])
    );
    // Left rooms no longer accept messages, and a second leave is an error.
    let ack = alice
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hi" })])
        .await?;
    assert_eq!(ack[0]["error"]["code"], json!("not_in_room"));
    let ack = alice
        .emit_with_ack("leave", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(ack[0]["error"]["code"], json!("not_in_room"));
    assert!(bob.notices(GRACE + SLACK).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_gives_exactly_one_leave_notice_from_a_survivor() -> anyhow::Result<()> {
    let c = cluster("crash", 3, |_| ()).await?;
    let mut bob = user(&c.nodes[0], "/", "bob").await;
    let mut carol = user(&c.nodes[1], "/", "carol").await;
    join(&mut bob, "lobby").await;
    join(&mut carol, "lobby").await;
    let mut alice = user(&c.nodes[2], "/", "alice").await;
    join(&mut alice, "lobby").await;
    bob.drain(Duration::from_millis(300)).await;
    carol.drain(Duration::ZERO).await;
    let crashed = Instant::now();
    c.nodes[2].crash();
    // Node timeout (1 s) + reaping tick + grace (0.8 s), then one notice.
    let notice = bob.event_within("notice", Duration::from_secs(6)).await?;
    assert_eq!(
        (notice[0]["kind"].as_str(), notice[0]["user"]["id"].as_str()),
        (Some("leave"), Some("alice"))
    );
    assert!(crashed.elapsed() >= GRACE);
    assert_eq!(
        delta(&bob.event("presence").await?[0]),
        (2, vec![], vec!["alice"])
    );
    assert_eq!(
        carol.notices(Duration::from_millis(200)).await,
        vec![("leave".into(), "alice".into())]
    );
    assert!(
        bob.notices(GRACE * 2).await.is_empty(),
        "announced more than once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_room_on_every_node_and_are_kept_in_history() -> anyhow::Result<()> {
    let c = cluster("history", 2, |config| config.history_len = 3).await?;
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let ack = alice
            .emit_with_ack(
                "message",
                &[json!({ "room": "lobby", "text": format!("m{i}") })],
            )
            .await?;
        assert_eq!(ack[0]["ok"], json!(true));
        let message = &ack[0]["message"];
        assert_eq!(
            message["from"],
            json!({ "id": "alice", "name": "alice-name" })
        );
        assert_eq!(message["room"], json!("lobby"));
        assert!(message["ts"].as_u64().unwrap() > 0);
        assert_eq!(message["seq"], json!(i + 1));
        ids.push(message["id"].as_str().unwrap().to_string());
        assert_eq!(bob.event("message").await?[0], *message, "other node");
        assert_eq!(
            alice.event("message").await?[0],
            *message,
            "sender included"
        );
    }
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "ids are unique: {ids:?}");
    let mut carol = user(&c.nodes[1], "/", "carol").await;
    let ack = join(&mut carol, "lobby").await;
    let texts: Vec<&str> = ack["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["m1", "m2", "m3"],
        "the last HISTORY_LEN messages, oldest first"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_node_refuses_messages_joins_and_leaves_before_changing_anything()
-> anyhow::Result<()> {
    use fred::interfaces::ClientLike;
    let c = cluster("overload", 1, |config| config.max_pending_broadcasts = 2).await?;
    let node = &c.nodes[0];
    let mut alice = user(node, "/", "alice").await;
    join(&mut alice, "lobby").await;
    let mut dave = user(node, "/", "dave").await;
    join(&mut dave, "lobby").await;
    let mut carol = user(node, "/", "carol").await;
    // Redis holds every write for a while, so the node's broadcasts wait for it, and two
    // server-side emits take both of its pending slots.
    let redis = c.redis.as_ref().unwrap();
    let pauser = socketio_cluster::RedisDriver::connect(socketio_cluster::RedisDriverConfig::new(
        redis.url(),
    ))
    .await?;
    let () = pauser
        .client()
        .custom(fred::cmd!("CLIENT"), vec!["PAUSE", "1500", "WRITE"])
        .await?;
    let admin = Admin::new();
    let emits = futures_util::future::join_all((0..2).map(|i| {
        admin.post(
            node,
            "/api/emit",
            json!({ "target": { "room": "lobby" }, "event": "poll", "data": i }),
        )
    }));
    let refused = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let message = alice
            .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hello" })])
            .await?;
        let join = carol
            .emit_with_ack("join", &[json!({ "room": "lobby" })])
            .await?;
        let leave = dave
            .emit_with_ack("leave", &[json!({ "room": "lobby" })])
            .await?;
        anyhow::Ok([message, join, leave])
    };
    let (emitted, acks) = tokio::join!(emits, refused);
    for ack in acks? {
        assert_eq!(ack[0]["ok"], json!(false), "{ack:?}");
        assert_eq!(ack[0]["error"]["code"], json!("rate_limited"));
        assert!(
            ack[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("overloaded"),
            "{ack:?}"
        );
    }
    assert_eq!(node.chat.cluster.stats().rejected, 3);
    // Once Redis takes writes again the waiting emits went out; the refused message is
    // nowhere, the refused leave left dave online, and the next requests go through.
    for emitted in emitted {
        assert_eq!(emitted?["ok"], json!(true));
    }
    let quiet = Duration::from_millis(300);
    assert_eq!(alice.events_within("poll", quiet).await.len(), 2);
    assert!(alice.events_within("message", quiet).await.is_empty());
    let ack = alice
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "again" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    let mut bob = user(node, "/", "bob").await;
    let ack = join(&mut bob, "lobby").await;
    let online: BTreeSet<String> = online_ids(&ack).into_iter().collect();
    assert_eq!(
        online,
        BTreeSet::from(["alice".into(), "bob".into(), "dave".into()])
    );
    let history = ack["history"].clone();
    assert_eq!(
        history
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["again"]
    );
    let ack = dave
        .emit_with_ack("leave", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_each_error_code_and_hurt_nobody_else() -> anyhow::Result<()> {
    let c = cluster("errors", 2, |config| {
        config.max_message_len = 10;
        config.rate_limit_burst = 6.0;
        config.rate_limit_per_sec = 1.0;
    })
    .await?;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    join(&mut bob, "lobby").await;
    let mut eve = user(&c.nodes[0], "/", "eve").await;
    let code = |ack: Vec<Value>| ack[0]["error"]["code"].as_str().unwrap_or("ok").to_string();
    let cases = [
        ("join", json!({ "nope": 1 }), "bad_request"),
        ("join", json!({ "room": "" }), "bad_request"),
        (
            "message",
            json!({ "room": "lobby", "text": "hi" }),
            "not_in_room",
        ),
        ("join", json!({ "room": "lobby" }), "ok"),
        (
            "message",
            json!({ "room": "lobby", "text": 42 }),
            "bad_request",
        ),
    ];
    for (event, payload, expected) in cases {
        assert_eq!(
            code(
                eve.emit_with_ack(event, std::slice::from_ref(&payload))
                    .await?
            ),
            expected,
            "{event} {payload}"
        );
    }
    // A raw non-JSON-object payload.
    assert_eq!(
        code(
            eve.emit_with_ack("message", &[json!("just a string")])
                .await?
        ),
        "bad_request"
    );
    // The burst of 6 is spent: the next events are rate limited, bob is not.
    assert_eq!(
        code(
            eve.emit_with_ack(
                "message",
                &[json!({ "room": "lobby", "text": "0123456789X" })]
            )
            .await?
        ),
        "rate_limited"
    );
    assert_eq!(
        code(
            bob.emit_with_ack(
                "message",
                &[json!({ "room": "lobby", "text": "0123456789X" })]
            )
            .await?
        ),
        "too_long"
    );
    assert_eq!(
        code(
            bob.emit_with_ack(
                "message",
                &[json!({ "room": "lobby", "text": "still here" })]
            )
            .await?
        ),
        "ok"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code(
            eve.emit_with_ack("message", &[json!({ "room": "lobby", "text": "again" })])
                .await?
        ),
        "ok"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_joins_at_most_max_rooms_per_socket() -> anyhow::Result<()> {
    let c = cluster("max-rooms", 1, |config| config.max_rooms_per_socket = 2).await?;
    let mut eve = user(&c.nodes[0], "/", "eve").await;
    let mut join_code = async |room: &str| -> anyhow::Result<String> {
        let ack = eve
            .emit_with_ack("join", &[json!({ "room": room })])
            .await?;
        Ok(ack[0]["error"]["code"].as_str().unwrap_or("ok").to_string())
    };
    assert_eq!(join_code("one").await?, "ok");
    assert_eq!(join_code("two").await?, "ok");
    assert_eq!(join_code("three").await?, "bad_request");
    // Joining a room it is in again is no new room; leaving one makes room for another.
    assert_eq!(join_code("one").await?, "ok");
    let ack = eve
        .emit_with_ack("leave", &[json!({ "room": "two" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true));
    let ack = eve
        .emit_with_ack("join", &[json!({ "room": "three" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_auth_secret_only_valid_tokens_connect() -> anyhow::Result<()> {
    let c = cluster("auth", 1, |config| {
        config.auth_secret = Some("s3cret".into())
    })
    .await?;
    let port = c.nodes[0].port;
    let now = jsonwebtoken::get_current_timestamp();
    let sign = |secret: &str, claims: Value| {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let alice = json!({ "sub": "alice", "name": "Alice", "exp": now + 600 });
    let mut alice_socket = Client::connect(
        port,
        "/",
        json!({ "token": sign("s3cret", alice.clone()), "userId": "mallory", "name": "Mallory" }),
        json!(1),
    )
    .await?;
    assert_eq!(
        join(&mut alice_socket, "lobby").await["chatter"],
        json!({ "id": "alice", "name": "Alice" }),
        "the token's claims win over what the client sends"
    );
    for auth in [
        json!({ "token": sign("wrong", alice.clone()) }),
        json!({ "token": sign("s3cret", json!({ "sub": "alice" })) }),
        json!({ "token": sign("s3cret", json!({ "sub": "alice", "exp": now - 3600 })) }),
        json!({ "token": sign("s3cret", json!({ "sub": "alice", "exp": now + 600, "nbf": now + 300 })) }),
        json!({}),
        json!({ "token": 12 }),
    ] {
        let err = Client::connect(port, "/", auth.clone(), json!(1))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("unauthorized"), "{auth}: {err}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_chatters_keep_their_id_across_a_refresh() -> anyhow::Result<()> {
    let c = cluster("anon", 2, |_| ()).await?;
    let mut first = Client::connect(c.nodes[0].port, "/", json!({}), json!(1)).await?;
    let ack = join(&mut first, "lobby").await;
    let id = ack["chatter"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("anon-"));
    first.close();
    let mut again = Client::connect(c.nodes[1].port, "/", json!({}), json!(1)).await?;
    let ack = again
        .emit_with_ack("join", &[json!({ "room": "lobby", "chatterId": id })])
        .await?;
    assert_eq!(ack[0]["chatter"]["id"], json!(id));
    assert_eq!(online_ids(&ack[0]), vec![id]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated() -> anyhow::Result<()> {
    let c = cluster("namespaces", 2, |_| ()).await?;
    let mut a = user(&c.nodes[0], "/team-a", "alice").await;
    let mut b = user(&c.nodes[1], "/team-b", "bob").await;
    let mut root = user(&c.nodes[1], "/", "root").await;
    join(&mut a, "lobby").await;
    let ack = join(&mut b, "lobby").await;
    assert_eq!(
        online_ids(&ack),
        vec!["bob"],
        "presence does not cross namespaces"
    );
    assert_eq!(ack["history"], json!([]));
    join(&mut root, "lobby").await;
    a.emit_with_ack(
        "message",
        &[json!({ "room": "lobby", "text": "only team a" })],
    )
    .await?;
    assert!(
        b.events_within("message", Duration::from_millis(400))
            .await
            .is_empty()
    );
    assert!(
        root.events_within("message", Duration::ZERO)
            .await
            .is_empty()
    );
    let err = Client::connect(c.nodes[0].port, "/bad.name", json!({}), json!(1))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("connect error"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_works_across_nodes() -> anyhow::Result<()> {
    let c = cluster("admin", 2, |_| ()).await?;
    let api = Admin::new();
    let mut alice = Client::connect_query(
        c.nodes[0].port,
        "/",
        json!({ "name": "Alice" }),
        json!("a-ack"),
        "userId=alice",
    )
    .await?;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    join(&mut bob, "side").await;

    let sockets = api.get(&c.nodes[1], "/api/sockets?room=lobby").await?;
    let sockets = sockets.as_array().unwrap();
    assert_eq!(sockets.len(), 2);
    let a = sockets
        .iter()
        .find(|s| s["data"]["userId"] == json!("alice"))
        .unwrap();
    assert_eq!(a["id"], json!(alice.id));
    assert_eq!(a["node"], json!("chat-0"));
    assert_eq!(a["data"], json!({ "userId": "alice", "name": "Alice" }));
    assert_eq!(a["rooms"], json!(["lobby"]));
    assert_eq!(a["handshake"]["address"], json!("127.0.0.1"));
    assert_eq!(a["handshake"]["query"]["userId"], json!("alice"));
    assert!(a["handshake"].get("auth").is_none());

    let rooms: BTreeSet<String> =
        serde_json::from_value(api.get(&c.nodes[0], "/api/rooms").await?)?;
    assert_eq!(
        rooms,
        BTreeSet::from(["lobby".to_string(), "side".to_string()])
    );
    let presence = api.get(&c.nodes[0], "/api/rooms/lobby/presence").await?;
    assert_eq!(online_ids(&presence), vec!["alice", "bob"]);

    api.post(
        &c.nodes[0],
        "/api/sockets/join",
        json!({ "target": { "userId": "bob" }, "rooms": ["vip"] }),
    )
    .await?;
    api.post(
        &c.nodes[1],
        "/api/emit",
        json!({ "target": { "room": "vip" }, "event": "promo", "data": { "x": 1 } }),
    )
    .await?;
    assert_eq!(bob.event("promo").await?, vec![json!({ "x": 1 })]);
    assert!(
        alice
            .events_within("promo", Duration::from_millis(300))
            .await
            .is_empty()
    );
    api.post(
        &c.nodes[1],
        "/api/sockets/leave",
        json!({ "target": { "room": "vip" }, "rooms": ["vip"] }),
    )
    .await?;
    api.post(
        &c.nodes[0],
        "/api/emit",
        json!({ "target": { "room": "vip" }, "event": "promo", "data": 2 }),
    )
    .await?;
    assert!(
        bob.events_within("promo", Duration::from_millis(300))
            .await
            .is_empty()
    );

    let acks = api
        .post(&c.nodes[1], "/api/emit", json!({ "target": { "room": "lobby" }, "event": "poll", "data": "?", "ack": { "timeoutMs": 2000 } }))
        .await?;
    let acks: BTreeSet<String> = serde_json::from_value(acks["acks"].clone())?;
    assert_eq!(
        acks,
        BTreeSet::from(["a-ack".to_string(), "bob".to_string()])
    );

    let nodes = api.get(&c.nodes[0], "/api/nodes").await?;
    let names: BTreeSet<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["chat-0", "chat-1"]));
    assert!(nodes[0]["lastHeartbeatMs"].as_u64().unwrap() > 0);

    api.post(
        &c.nodes[1],
        "/api/sockets/disconnect",
        json!({ "target": { "room": "lobby", "except": ["side"] } }),
    )
    .await?;
    alice.disconnected().await?;
    // The client reads the disconnect packet a moment before its node forgets the socket.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let sockets = api.get(&c.nodes[0], "/api/sockets").await?;
        let left = sockets.as_array().unwrap().len();
        if left == 1 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{left} sockets left, expected 1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Bad input and bad tokens.
    let http = reqwest::Client::new();
    let res = http
        .get(c.nodes[0].url("/api/nodes"))
        .bearer_auth("wrong")
        .send()
        .await?;
    assert_eq!(res.status(), 401);
    let res = http.get(c.nodes[0].url("/api/nodes")).send().await?;
    assert_eq!(res.status(), 401);
    let res = http
        .post(c.nodes[0].url("/api/sockets/join"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(res.status(), 400);
    let res = http
        .get(c.nodes[0].url("/api/sockets?ns=bad ns"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(res.status(), 400);
    Ok(())
}

/// Admin `socketsJoin` / `socketsLeave` act as the chat's `join` / `leave` of each socket, on
/// whichever node holds it: presence, notices and the right to post follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_room_changes_act_as_chat_joins_and_leaves_across_nodes() -> anyhow::Result<()> {
    let c = cluster("adminrooms", 2, |_| ()).await?;
    let api = Admin::new();
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    let mut bob = user(&c.nodes[1], "/", "bob").await;
    join(&mut bob, "r").await;
    let post = |text: &str| json!({ "room": "r", "text": text });

    // Asked on bob's node, applied on alice's.
    api.post(
        &c.nodes[1],
        "/api/sockets/join",
        json!({ "target": { "userId": "alice" }, "rooms": ["r"] }),
    )
    .await?;
    assert_eq!(
        bob.notices(Duration::from_millis(500)).await,
        vec![("join".into(), "alice".into())]
    );
    let presence = api.get(&c.nodes[1], "/api/rooms/r/presence").await?;
    assert_eq!(online_ids(&presence), vec!["alice", "bob"]);
    let ack = alice
        .emit_with_ack("message", &[post("joined by admin")])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    for member in [&mut bob, &mut alice] {
        assert_eq!(
            member.event("message").await?[0]["text"],
            json!("joined by admin")
        );
    }

    api.post(
        &c.nodes[1],
        "/api/sockets/leave",
        json!({ "target": { "userId": "alice" }, "rooms": ["r"] }),
    )
    .await?;
    assert_eq!(
        bob.notices(Duration::from_millis(500)).await,
        vec![("leave".into(), "alice".into())],
        "announced at once, as an explicit leave"
    );
    let presence = api.get(&c.nodes[0], "/api/rooms/r/presence").await?;
    assert_eq!(online_ids(&presence), vec!["bob"]);
    let ack = alice.emit_with_ack("message", &[post("gone")]).await?;
    assert_eq!(ack[0]["error"]["code"], json!("not_in_room"));
    let heard = alice
        .events_within("message", Duration::from_millis(300))
        .await;
    assert!(heard.is_empty(), "no longer hears the room: {heard:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_absent_without_a_token_and_health_is_public() -> anyhow::Result<()> {
    let c = cluster("noadmin", 1, |config| config.admin_token = None).await?;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(c.nodes[0].url("/api/nodes"))
            .send()
            .await?
            .status(),
        404
    );
    assert_eq!(
        http.get(c.nodes[0].url("/healthz")).send().await?.status(),
        200
    );
    assert_eq!(
        http.get(c.nodes[0].url("/readyz")).send().await?.status(),
        200
    );
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    join(&mut alice, "lobby").await;
    alice
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hi" })])
        .await?;
    let metrics = http
        .get(c.nodes[0].url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for needle in [
        "chat_sockets{node=\"chat-0\"} 1",
        "chat_messages_in_total{node=\"chat-0\"} 1",
        "cluster_request_duration_seconds",
        "redis_reconnects_total",
        "dropped_messages_lost_total",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_clients_move_without_a_leave_notice() -> anyhow::Result<()> {
    let c = cluster("shutdown", 2, |config| config.leave_grace_ms = 2000).await?;
    let mut bob = user(&c.nodes[0], "/", "bob").await;
    join(&mut bob, "lobby").await;
    let mut alice = user(&c.nodes[1], "/", "alice").await;
    join(&mut alice, "lobby").await;
    bob.drain(Duration::from_millis(300)).await;
    let started = Instant::now();
    c.nodes[1].stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    alice.disconnected().await?;
    let mut alice = user(&c.nodes[0], "/", "alice").await;
    join(&mut alice, "lobby").await;
    assert!(
        bob.notices(Duration::from_millis(2500)).await.is_empty(),
        "the move was announced"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_without_redis_is_a_complete_chat() -> anyhow::Result<()> {
    init_tracing();
    let node = ChatNode::solo(chat_config("solo", None, "solo")).await?;
    let mut alice = user(&node, "/", "alice").await;
    let mut bob = user(&node, "/", "bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    assert_eq!(
        alice.notices(Duration::from_millis(300)).await,
        vec![("join".into(), "bob".into())]
    );
    alice
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hello" })])
        .await?;
    assert_eq!(bob.event("message").await?[0]["text"], json!("hello"));
    bob.close();
    let notice = alice
        .event_within("notice", GRACE + SLACK + Duration::from_secs(1))
        .await?;
    assert_eq!(
        (notice[0]["kind"].as_str(), notice[0]["user"]["id"].as_str()),
        (Some("leave"), Some("bob"))
    );
    let mut carol = user(&node, "/", "carol").await;
    assert_eq!(
        join(&mut carol, "lobby").await["history"][0]["text"],
        json!("hello")
    );
    Ok(())
}

/// One fallback handler answers the chat's events; an event of another name, however close,
/// does nothing, and the socket's chat events are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_chat_does_not_know_do_nothing() -> anyhow::Result<()> {
    init_tracing();
    let node = ChatNode::solo(chat_config("other-events", None, "other-events")).await?;
    let mut alice = user(&node, "/", "alice").await;
    alice.emit("Join", &[json!({ "room": "lobby" })]);
    alice.emit("join ", &[json!({ "room": "lobby" })]);
    let history = alice
        .emit_with_ack("history", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(history[0]["error"]["code"], json!("not_in_room"));
    join(&mut alice, "lobby").await;
    let history = alice
        .emit_with_ack("history", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(history[0]["ok"], json!(true));
    Ok(())
}

/// The chat server is generic over its backend, so on Redis a cluster request reaches the Redis
/// driver's own count-then-publish: `PUBSUB NUMSUB` and `PUBLISH` in one transaction, which Redis
/// runs back to back, so no node subscribes or leaves between the count and the request. (An enum
/// wrapper once forwarded every driver method but that one, and its two-step default ran instead;
/// a pipeline was not enough either: this test saw another client's command run in between.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_request_is_counted_and_published_in_one_pipeline() -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let c = cluster("pipeline", 2, |_| ()).await?;
    let url = c.redis.as_ref().unwrap().url();
    let addr = url.trim_start_matches("redis://");
    let mut monitor = tokio::net::TcpStream::connect(addr).await?;
    monitor.write_all(b"MONITOR\r\n").await?;
    let mut lines = BufReader::new(monitor).lines();
    assert_eq!(lines.next_line().await?.as_deref(), Some("+OK"));
    Admin::new().get(&c.nodes[0], "/api/sockets").await?;
    // `[db client] "COMMAND" …`: the client and the command of each line.
    let parse = |line: &str| {
        let rest = line.split_once(" [")?.1;
        let (client, command) = rest.split_once("] ")?;
        Some((client.to_string(), command.to_string()))
    };
    let mut previous: Option<(String, String)> = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "no request was published");
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await??
            .unwrap_or_default();
        let Some((client, command)) = parse(&line) else {
            continue;
        };
        if command.starts_with("\"PUBLISH\"") && command.contains("-request#/#") {
            let (before_client, before) = previous.clone().unwrap_or_default();
            assert!(
                before.starts_with("\"PUBSUB\" \"NUMSUB\"") && before_client == client,
                "the request was not counted in the same pipeline: {before_client} {before} then {client} {command}"
            );
            return Ok(());
        }
        previous = Some((client, command));
    }
}
