//! The Socket.IO Admin UI protocol (`@socket.io/admin-ui` 0.5.1) on a cluster of three
//! `chat-server` nodes sharing Redis: login, sessions that work on another node, what every
//! node reports, every action cluster-wide, readonly mode, and a node that dies.

use std::{
    collections::BTreeSet,
    sync::OnceLock,
    time::{Duration, Instant},
};

use cluster_tests::{ChatNode, Client, TestRedis, chat_nodes};
use serde_json::{Value, json};

const USERNAME: &str = "ops";
const PASSWORD: &str = "correct horse";
const ADMIN_NSP: &str = "/admin";

/// bcrypt at its lowest cost, so tests do not spend seconds hashing.
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash(PASSWORD, 4).unwrap())
}

fn admin_ui_on(config: &mut chat_server::Config, mode: &str, readonly: bool) {
    config.admin_ui.admin_ui_username = Some(USERNAME.into());
    config.admin_ui.admin_ui_password_hash = Some(password_hash().into());
    config.admin_ui.admin_ui_mode = match mode {
        "development" => chat_server::admin_ui::settings::Mode::Development,
        _ => chat_server::admin_ui::settings::Mode::Production,
    };
    config.admin_ui.admin_ui_readonly = readonly;
}

async fn cluster(test: &str, mode: &str, readonly: bool) -> (TestRedis, Vec<ChatNode>) {
    let redis = TestRedis::start().await.expect("redis");
    let nodes = chat_nodes(&redis.url(), test, 3, |c| admin_ui_on(c, mode, readonly))
        .await
        .expect("nodes");
    (redis, nodes)
}

async fn admin(node: &ChatNode, auth: Value) -> anyhow::Result<Client> {
    Client::connect(node.port, ADMIN_NSP, auth, Value::Null).await
}

async fn login(node: &ChatNode) -> Client {
    admin(node, json!({ "username": USERNAME, "password": PASSWORD }))
        .await
        .expect("the right password logs in")
}

async fn user(node: &ChatNode, id: &str) -> Client {
    let auth = json!({ "userId": id, "name": format!("{id}-name") });
    Client::connect(node.port, "/", auth, Value::Null)
        .await
        .expect("a chat user connects")
}

async fn join(client: &mut Client, room: &str) {
    let ack = client
        .emit_with_ack("join", &[json!({ "room": room })])
        .await
        .expect("join ack");
    assert_eq!(ack[0]["ok"], json!(true), "join failed: {ack:?}");
}

/// The `server_stats` an admin socket receives within `wait`, by server id.
async fn stats_by_server(admin: &mut Client, wait: Duration) -> Vec<(String, Value)> {
    admin
        .events_within("server_stats", wait)
        .await
        .into_iter()
        .map(|args| {
            (
                args[0]["serverId"].as_str().unwrap().to_string(),
                args[0].clone(),
            )
        })
        .collect()
}

fn servers(stats: &[(String, Value)]) -> BTreeSet<String> {
    stats.iter().map(|(id, _)| id.clone()).collect()
}

fn is_iso_timestamp(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[tokio::test]
async fn login_answers_a_session_that_works_on_another_node() {
    let (_redis, nodes) = cluster("admin_login", "production", false).await;

    for wrong in [
        json!({ "username": USERNAME, "password": "wrong" }),
        json!({ "username": "root", "password": PASSWORD }),
        json!({ "sessionId": "0123456789abcdef0123456789abcdef" }),
        json!({ "sessionId": null }),
        json!({}),
    ] {
        let err = admin(&nodes[0], wrong.clone())
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string()
                .contains(r#""message":"invalid credentials""#),
            "{wrong}: {err}"
        );
    }

    let mut first = login(&nodes[0]).await;
    let session = first.event("session").await.unwrap();
    let id = session[0].as_str().expect("a session id").to_string();
    assert_eq!(id.len(), 32);
    let config = first.event("config").await.unwrap();
    assert_eq!(
        config[0],
        json!({ "supportedFeatures": ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS"] })
    );

    // A reload that the balancer sends to another node.
    let mut resumed = admin(&nodes[2], json!({ "sessionId": id }))
        .await
        .expect("the session is known on every node");
    let received = resumed.drain(Duration::from_millis(500)).await;
    let names: Vec<String> = received
        .iter()
        .filter_map(|r| match r {
            cluster_tests::client::Received::Event { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert!(names.contains(&"config".to_string()), "{names:?}");
    assert!(
        !names.contains(&"session".to_string()),
        "a resumed session gets no new one"
    );
}

#[tokio::test]
async fn a_brute_force_is_refused_cheaply() {
    let (_redis, nodes) = cluster("admin_brute_force", "production", false).await;
    let started = Instant::now();
    let (mut wrong, mut rationed) = (0, 0);
    for i in 0..1000 {
        let guess = json!({ "username": USERNAME, "password": format!("guess-{i}") });
        let err = admin(&nodes[0], guess).await.err().expect("refused");
        if err.to_string().contains("invalid credentials") {
            wrong += 1;
        } else if err.to_string().contains("too many login attempts") {
            rationed += 1;
        } else {
            panic!("unexpected refusal: {err}");
        }
    }
    let took = started.elapsed();
    eprintln!(
        "1000 wrong logins from one address: {wrong} checked, {rationed} refused unchecked, {took:?} ({:?} each)",
        took / 1000
    );
    assert!(wrong <= 5, "{wrong} passwords were checked");
    assert_eq!(wrong + rationed, 1000);
    // Even the right password waits for the ration now.
    let err = admin(
        &nodes[0],
        json!({ "username": USERNAME, "password": PASSWORD }),
    )
    .await
    .err()
    .expect("rationed");
    assert!(err.to_string().contains("too many login attempts"), "{err}");
}

#[tokio::test]
async fn every_node_reports_its_statistics_to_every_admin() {
    let (_redis, nodes) = cluster("admin_stats", "production", false).await;
    let mut ui = login(&nodes[0]).await;
    let _alice = user(&nodes[1], "alice").await;
    let _bob = user(&nodes[2], "bob").await;

    let stats = stats_by_server(&mut ui, Duration::from_millis(4500)).await;
    assert_eq!(
        servers(&stats),
        BTreeSet::from(["chat-0".into(), "chat-1".into(), "chat-2".into()])
    );
    let (_, chat1) = stats.iter().find(|(id, _)| id == "chat-1").unwrap();
    assert_eq!(chat1["pid"], json!(std::process::id()));
    assert!(chat1["hostname"].is_string() && chat1["uptime"].is_f64());
    assert_eq!(chat1["clientsCount"], json!(1));
    assert_eq!(chat1["pollingClientsCount"], json!(0));
    let namespaces = chat1["namespaces"].as_array().unwrap();
    assert!(
        namespaces.contains(&json!({ "name": "/", "socketsCount": 1 })),
        "{namespaces:?}"
    );
    // What happened on chat-1 since it started: alice's connection and her bytes.
    let aggregated: Vec<&Value> = stats
        .iter()
        .filter(|(id, _)| id == "chat-1")
        .flat_map(|(_, s)| s["aggregatedEvents"].as_array().unwrap())
        .collect();
    let count = |kind: &str| -> u64 {
        aggregated
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count("rawConnection"), 1, "{aggregated:?}");
    assert!(
        count("bytesIn") > 0 && count("bytesOut") > 0,
        "{aggregated:?}"
    );
    assert!(
        aggregated
            .iter()
            .all(|e| e["timestamp"].as_u64().unwrap() % 1000 == 0),
        "buckets are whole seconds in ms"
    );
}

#[tokio::test]
async fn a_dead_node_stops_reporting() {
    let (_redis, nodes) = cluster("admin_dead_node", "production", false).await;
    let mut ui = login(&nodes[0]).await;
    let before = stats_by_server(&mut ui, Duration::from_millis(2500)).await;
    assert!(servers(&before).contains("chat-2"));
    nodes[2].crash();
    // At most one in flight when it died.
    let _ = ui.drain(Duration::from_millis(300)).await;
    let after = stats_by_server(&mut ui, Duration::from_millis(4500)).await;
    assert_eq!(
        servers(&after),
        BTreeSet::from(["chat-0".into(), "chat-1".into()])
    );
}

#[tokio::test]
async fn development_mode_shows_every_socket_room_and_event_of_the_cluster() {
    let (_redis, nodes) = cluster("admin_development", "development", false).await;
    let mut alice = user(&nodes[1], "alice").await;
    let mut ui = login(&nodes[0]).await;
    let config = ui.event("config").await.unwrap();
    assert_eq!(
        config[0]["supportedFeatures"].as_array().unwrap().last(),
        Some(&json!("ALL_EVENTS"))
    );
    let all = ui.event("all_sockets").await.unwrap();
    let sockets = all[0].as_array().expect("one argument: the list");
    let alice_entry = sockets
        .iter()
        .find(|s| s["id"] == json!(alice.id))
        .unwrap_or_else(|| panic!("alice (on another node) is listed: {sockets:?}"));
    assert_eq!(alice_entry["nsp"], json!("/"));
    assert_eq!(alice_entry["data"]["userId"], json!("alice"));
    assert_eq!(alice_entry["transport"], json!("websocket"));
    assert_eq!(alice_entry["clientId"], json!(alice.id[..12]));
    assert!(alice_entry["handshake"]["issued"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(alice_entry["handshake"]["headers"].is_object());
    assert!(
        alice_entry["handshake"].get("auth").is_none(),
        "no credentials"
    );
    assert!(
        alice_entry["rooms"]
            .as_array()
            .unwrap()
            .contains(&json!(alice.id))
    );
    assert!(
        sockets.iter().any(|s| s["nsp"] == json!(ADMIN_NSP)),
        "the admin's own socket is listed, as in Node"
    );

    let mut bob = user(&nodes[2], "bob").await;
    let connected = ui.event("socket_connected").await.unwrap();
    assert_eq!(connected[0]["id"], json!(bob.id));
    assert_eq!(connected[0]["data"]["name"], json!("bob-name"));
    assert!(is_iso_timestamp(&connected[1]), "{connected:?}");

    join(&mut bob, "lobby").await;
    let joined = ui.event("room_joined").await.unwrap();
    assert_eq!(&joined[..3], &[json!("/"), json!("lobby"), json!(bob.id)]);
    assert!(is_iso_timestamp(&joined[3]));

    let ack = bob
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hi" })])
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], json!(true));
    let received = ui.event("event_received").await.unwrap();
    assert_eq!(received[0], json!("/"));
    assert_eq!(received[1], json!(bob.id));
    assert_eq!(
        received[2],
        json!(["message", { "room": "lobby", "text": "hi" }])
    );

    bob.close();
    let disconnected = ui.event("socket_disconnected").await.unwrap();
    assert_eq!(
        &disconnected[..3],
        &[json!("/"), json!(bob.id), json!("transport close")]
    );
    let mut left = BTreeSet::new();
    for _ in 0..2 {
        let room_left = ui.event("room_left").await.unwrap();
        assert_eq!(room_left[2], json!(bob.id));
        left.insert(room_left[1].as_str().unwrap().to_string());
    }
    assert_eq!(left, BTreeSet::from(["lobby".to_string(), bob.id.clone()]));
    drop(alice.drain(Duration::ZERO).await);
}

#[tokio::test]
async fn actions_reach_sockets_on_other_nodes() {
    let (_redis, nodes) = cluster("admin_actions", "production", false).await;
    let ui = login(&nodes[0]).await;
    let mut alice = user(&nodes[1], "alice").await;
    let mut bob = user(&nodes[2], "bob").await;
    join(&mut bob, "ops").await;

    // join(nsp, room, socket id): alice joins "ops" as if she had sent `join`: bob hears it.
    ui.emit("join", &[json!("/"), json!("ops"), json!(alice.id)]);
    let notices = bob.notices(Duration::from_millis(1500)).await;
    assert!(
        notices.contains(&("join".to_string(), "alice".to_string())),
        "{notices:?}"
    );
    let ack = alice
        .emit_with_ack("message", &[json!({ "room": "ops", "text": "in" })])
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], json!(true), "alice may post: {ack:?}");

    // leave(nsp, room, socket id).
    ui.emit("leave", &[json!("/"), json!("ops"), json!(alice.id)]);
    let notices = bob.notices(Duration::from_millis(1500)).await;
    assert!(
        notices.contains(&("leave".to_string(), "alice".to_string())),
        "{notices:?}"
    );

    // emit(nsp, filter, event, ...args).
    ui.emit(
        "emit",
        &[
            json!("/"),
            json!(alice.id),
            json!("announcement"),
            json!({ "text": "maintenance" }),
        ],
    );
    let announcement = alice.event("announcement").await.unwrap();
    assert_eq!(announcement, vec![json!({ "text": "maintenance" })]);

    // _disconnect(nsp, close, room): everyone in "ops" (bob) leaves, alice stays.
    ui.emit("_disconnect", &[json!("/"), json!(false), json!("ops")]);
    bob.disconnected().await.expect("bob is disconnected");
    assert!(alice.disconnected_at().is_none());

    // A room name that could be a socket id, or the admin namespace itself: nothing happens.
    ui.emit("_disconnect", &[json!(ADMIN_NSP), json!(true)]);
    ui.emit("join", &[json!("/"), json!(alice.id), json!(alice.id)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(alice.disconnected_at().is_none());
}

#[tokio::test]
async fn readonly_advertises_and_carries_out_no_action() {
    let (_redis, nodes) = cluster("admin_readonly", "production", true).await;
    let mut ui = login(&nodes[0]).await;
    let config = ui.event("config").await.unwrap();
    assert_eq!(
        config[0],
        json!({ "supportedFeatures": ["AGGREGATED_EVENTS"] })
    );
    let mut alice = user(&nodes[1], "alice").await;
    ui.emit("_disconnect", &[json!("/"), json!(true), json!(alice.id)]);
    ui.emit(
        "emit",
        &[json!("/"), Value::Null, json!("announcement"), json!("x")],
    );
    let received = alice.drain(Duration::from_millis(800)).await;
    assert!(received.is_empty(), "{received:?}");
    assert!(alice.disconnected_at().is_none());
}

#[tokio::test]
async fn the_hosted_ui_may_poll_with_credentials_from_an_allowed_origin() {
    let redis = TestRedis::start().await.expect("redis");
    let nodes = chat_nodes(&redis.url(), "admin_cors", 1, |c| {
        admin_ui_on(c, "production", false);
        c.cors_origins = Some("https://admin.socket.io".into());
    })
    .await
    .expect("node");
    let res = reqwest::Client::new()
        .get(nodes[0].url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", "https://admin.socket.io")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("https://admin.socket.io")
    );
    assert_eq!(
        header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    // The served page.
    let page = reqwest::get(nodes[0].url("/admin-ui/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Socket.IO Admin UI"));
}

#[tokio::test]
async fn an_admin_socket_gets_no_more_actions_than_its_allowance() {
    let (_redis, nodes) = cluster("admin_flood", "production", false).await;
    let ui = login(&nodes[0]).await;
    let mut alice = user(&nodes[1], "alice").await;
    for i in 0..100 {
        ui.emit(
            "emit",
            &[json!("/"), json!(alice.id), json!("ping"), json!(i)],
        );
    }
    let got = alice
        .events_within("ping", Duration::from_millis(1500))
        .await;
    // A burst of 20, and 10 a second after it.
    assert!(
        (20..=25).contains(&got.len()),
        "{} actions carried out",
        got.len()
    );
}
