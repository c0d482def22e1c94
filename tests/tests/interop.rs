//! Rust nodes in a Node.js socket.io cluster: two `chat-server` nodes and a Node.js socket.io 4.8
//! server on @socket.io/redis-adapter 8 share one Redis 7 and one key. Every cluster operation is
//! issued from each side and observed on the other, with the Node adapter's
//! `publishOnSpecificResponseChannel` off and on (the Rust nodes set theirs alike). Then
//! @socket.io/redis-emitter publishing to Rust nodes, and nodes of either kind being killed.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cluster_tests::{
    Admin, ChatNode, Client, TestRedis, chat_config, init_tracing,
    nodejs::{NodeJsConfig, NodeJsServer, emitter},
    process::{NodeProcess, free_port},
    unique_key,
};
use serde_json::{Value, json};
use socketio_cluster::{Cluster, Target};

/// How long a client must stay silent to count as "did not receive it".
const QUIET: Duration = Duration::from_millis(300);

/// Redis, two chat-server nodes and one Node.js node on one key.
struct Mixed {
    redis: TestRedis,
    key: String,
    rust: Vec<ChatNode>,
    node: NodeJsServer,
}

impl Mixed {
    async fn start(test: &str, specific: bool) -> anyhow::Result<Self> {
        init_tracing();
        let redis = TestRedis::start().await?;
        let key = unique_key(test);
        let mut rust = Vec::new();
        for i in 0..2 {
            let mut config = chat_config(&format!("rust-{i}"), Some(&redis.url()), &key);
            config.redis_specific_response_channel = specific;
            rust.push(ChatNode::start(config).await?);
        }
        let node = NodeJsServer::start(NodeJsConfig {
            name: "node-0",
            redis_url: &redis.url(),
            key: &key,
            specific_response_channel: specific,
            // On a Redis Cluster (`TEST_REDIS=cluster`) the Rust nodes speak the sharded protocol.
            subscription_mode: cluster_tests::redis::on_cluster().then_some("dynamic"),
        })
        .await?;
        let mixed = Self {
            redis,
            key,
            rust,
            node,
        };
        mixed.settle(3).await?;
        Ok(mixed)
    }

    fn cluster(&self, i: usize) -> &Cluster<socketio_cluster::RedisDriver> {
        &self.rust[i].chat.cluster
    }

    /// The ids of the sockets in `room` of `/`, as Rust node `i` fetches them.
    async fn members(&self, i: usize, room: &str) -> BTreeSet<String> {
        let sockets = self
            .cluster(i)
            .fetch_sockets("/", &Target::rooms([room]))
            .await
            .unwrap();
        sockets.into_iter().map(|s| s.id().to_owned()).collect()
    }

    /// Waits until both kinds of node count `n` servers in `/`.
    async fn settle(&self, n: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let node_count = self.node.call("serverCount", json!({})).await?;
            let mut rust_counts = Vec::new();
            for i in 0..self.rust.len() {
                rust_counts.push(u64::from(self.cluster(i).server_count("/").await?));
            }
            if node_count == json!(n) && rust_counts.iter().all(|c| *c == n) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "server counts never reached {n}: node.js {node_count}, rust {rust_counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A chat user on Rust node `i`, joined to `rooms` through the chat protocol. It answers
    /// ack requests with its user id.
    async fn rust_user(&self, i: usize, id: &str, rooms: &[&str]) -> Client {
        let auth = json!({ "userId": id, "name": format!("{id}-name") });
        let mut client = Client::connect(self.rust[i].port, "/", auth, json!(id))
            .await
            .expect("connects to rust");
        for room in rooms {
            let ack = client
                .emit_with_ack("join", &[json!({ "room": room })])
                .await
                .expect("join ack");
            assert_eq!(ack[0]["ok"], json!(true), "join failed: {ack:?}");
        }
        client
    }

    /// A socket on the Node.js node, in `rooms` from its handshake.
    async fn node_user(&self, id: &str, rooms: &[&str]) -> Client {
        let auth = json!({ "userId": id, "name": format!("{id}-name"), "rooms": rooms });
        Client::connect(self.node.port, "/", auth, json!(id))
            .await
            .expect("connects to node.js")
    }
}

/// The users of every scenario: two on each kind of node in `lobby`, one of each also in `vip`,
/// and one of each in no room.
struct Users {
    /// r1 (rust-0: lobby), r2 (rust-1: lobby, vip), r3 (rust-1: none),
    /// n1 (lobby), n2 (lobby, vip), n3 (none).
    all: Vec<(&'static str, Client)>,
    /// Users already disconnected.
    gone: BTreeSet<&'static str>,
}

impl Users {
    async fn new(mixed: &Mixed) -> Self {
        let all = vec![
            ("r1", mixed.rust_user(0, "r1", &["lobby"]).await),
            ("r2", mixed.rust_user(1, "r2", &["lobby", "vip"]).await),
            ("r3", mixed.rust_user(1, "r3", &[]).await),
            ("n1", mixed.node_user("n1", &["lobby"]).await),
            ("n2", mixed.node_user("n2", &["lobby", "vip"]).await),
            ("n3", mixed.node_user("n3", &[]).await),
        ];
        Self {
            all,
            gone: BTreeSet::new(),
        }
    }

    fn id(&self, user: &str) -> String {
        self.all
            .iter()
            .find(|(u, _)| *u == user)
            .unwrap()
            .1
            .id
            .clone()
    }

    fn ids(&self, users: &[&str]) -> BTreeSet<String> {
        users.iter().map(|u| self.id(u)).collect()
    }

    /// Checks that exactly `expected` got `event` (with `args`), and nobody else within `QUIET`.
    async fn assert_received(&mut self, event: &str, args: &[Value], expected: &[&str]) {
        for (user, client) in &mut self.all {
            if expected.contains(user) {
                let got = client.event(event).await.unwrap_or_else(|e| {
                    panic!("{user} did not get {event}: {e}");
                });
                assert_eq!(got, args, "{user} got {event} with other arguments");
            } else {
                let got = client.events_within(event, QUIET).await;
                assert!(got.is_empty(), "{user} should not get {event}: {got:?}");
            }
        }
    }

    /// Waits until exactly `expected` of the users still connected are disconnected.
    async fn assert_disconnected(&mut self, expected: &[&'static str]) {
        for (user, client) in &mut self.all {
            if expected.contains(user) {
                client
                    .disconnected()
                    .await
                    .unwrap_or_else(|e| panic!("{user} was not disconnected: {e}"));
            }
        }
        self.gone.extend(expected);
        for (user, client) in &mut self.all {
            if !self.gone.contains(user) {
                let events = client.drain(QUIET).await;
                assert!(
                    !events.contains(&cluster_tests::Received::Disconnected),
                    "{user} should stay connected"
                );
            }
        }
    }
}

macro_rules! in_both_response_modes {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shared_response_channel() -> anyhow::Result<()> {
                let mixed = Mixed::start(stringify!($scenario), false).await?;
                super::$scenario(&mixed).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn specific_response_channel() -> anyhow::Result<()> {
                let mixed = Mixed::start(stringify!($scenario), true).await?;
                super::$scenario(&mixed).await
            }
        }
    };
}

in_both_response_modes!(broadcasts_cross_both_ways);
async fn broadcasts_cross_both_ways(mixed: &Mixed) -> anyhow::Result<()> {
    let mut users = Users::new(mixed).await;
    let lobby = ["r1", "r2", "n1", "n2"];
    let everyone = ["r1", "r2", "r3", "n1", "n2", "n3"];

    // Node.js → everyone: to a room, with except, to all.
    let args = [json!({ "from": "node" })];
    let emit = |rooms: &[&str], except: &[&str], event: &str| json!({ "rooms": rooms, "except": except, "event": event, "args": args });
    mixed
        .node
        .call("emit", emit(&["lobby"], &[], "n-room"))
        .await?;
    users.assert_received("n-room", &args, &lobby).await;
    mixed
        .node
        .call("emit", emit(&["lobby"], &["vip"], "n-except"))
        .await?;
    users
        .assert_received("n-except", &args, &["r1", "n1"])
        .await;
    mixed.node.call("emit", emit(&[], &[], "n-all")).await?;
    users.assert_received("n-all", &args, &everyone).await;

    // Rust → everyone, from both Rust nodes.
    for i in 0..2 {
        let args = vec![json!({ "from": format!("rust-{i}") })];
        let cluster = mixed.cluster(i);
        cluster
            .emit("/", &Target::rooms(["lobby"]), "r-room", args.clone())
            .await?;
        users.assert_received("r-room", &args, &lobby).await;
        let lobby_but_vip = Target::rooms(["lobby"]).except(["vip"]);
        cluster
            .emit("/", &lobby_but_vip, "r-except", args.clone())
            .await?;
        users
            .assert_received("r-except", &args, &["r1", "n1"])
            .await;
        cluster
            .emit("/", &Target::all(), "r-all", args.clone())
            .await?;
        users.assert_received("r-all", &args, &everyone).await;
    }

    // A chat message sent on a Rust node reaches the Node.js sockets in the room.
    let r1 = &mut users.all[0].1;
    let ack = r1
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hi node" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    for (user, client) in &mut users.all {
        if lobby.contains(user) {
            let message = client.event("message").await?;
            assert_eq!(message[0]["text"], json!("hi node"), "{user}");
            assert_eq!(message[0]["from"]["id"], json!("r1"), "{user}");
        }
    }
    Ok(())
}

in_both_response_modes!(broadcast_acks_cross_both_ways);
async fn broadcast_acks_cross_both_ways(mixed: &Mixed) -> anyhow::Result<()> {
    let _users = Users::new(mixed).await;
    let lobby = set(["r1", "r2", "n1", "n2"]);

    let reply = mixed
        .node
        .call(
            "emit",
            json!({ "rooms": ["lobby"], "event": "poll", "args": [1], "ackTimeoutMs": 2000 }),
        )
        .await?;
    assert_eq!(strings(&reply["acks"]), lobby, "acks collected by Node.js");

    for i in 0..2 {
        let acks = mixed
            .cluster(i)
            .emit_with_ack(
                "/",
                &Target::rooms(["lobby"]),
                "poll",
                vec![json!(2)],
                Duration::from_secs(2),
            )
            .await?;
        assert_eq!(strings(&json!(acks)), lobby, "acks collected by rust-{i}");
    }

    // Every socket, with except, from Node.js: the users outside `vip`.
    let reply = mixed
        .node
        .call(
            "emit",
            json!({ "except": ["vip"], "event": "poll", "args": [3], "ackTimeoutMs": 2000 }),
        )
        .await?;
    assert_eq!(strings(&reply["acks"]), set(["r1", "r3", "n1", "n3"]));
    Ok(())
}

in_both_response_modes!(fetch_sockets_crosses_both_ways);
async fn fetch_sockets_crosses_both_ways(mixed: &Mixed) -> anyhow::Result<()> {
    let users = Users::new(mixed).await;

    // Node.js sees the Rust sockets with their rooms, data and handshake.
    let sockets = mixed
        .node
        .call("fetchSockets", json!({ "rooms": ["lobby"] }))
        .await?;
    assert_eq!(ids_of(&sockets), users.ids(&["r1", "r2", "n1", "n2"]));
    let sockets = sockets.as_array().unwrap();
    let r2 = sockets.iter().find(|s| s["id"] == json!(users.id("r2")));
    let r2 = r2.expect("r2 fetched");
    let rooms: BTreeSet<&str> = r2["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        rooms,
        BTreeSet::from(["lobby", "vip", users.id("r2").as_str()])
    );
    assert_eq!(r2["data"]["userId"], json!("r2"));
    assert_eq!(r2["data"]["name"], json!("r2-name"));
    let handshake = &r2["handshake"];
    assert_eq!(handshake["query"]["EIO"], json!("4"));
    assert_eq!(handshake["query"]["transport"], json!("websocket"));
    assert!(
        handshake["url"]
            .as_str()
            .unwrap()
            .starts_with("/socket.io/")
    );
    assert!(handshake["issued"].as_u64().unwrap() > 0);
    assert!(handshake["headers"]["host"].is_string());
    assert_eq!(
        handshake["auth"],
        json!({}),
        "the auth payload is never sent"
    );

    // Rust sees the Node.js sockets with their rooms, data and handshake, from both nodes.
    for i in 0..2 {
        let sockets = mixed
            .cluster(i)
            .fetch_sockets("/", &Target::rooms(["vip"]))
            .await?;
        let ids: BTreeSet<String> = sockets.iter().map(|s| s.id().to_owned()).collect();
        assert_eq!(ids, users.ids(&["r2", "n2"]));
        let n2 = sockets.iter().find(|s| s.id() == users.id("n2")).unwrap();
        assert_eq!(
            *n2.data(),
            json!({ "userId": "n2", "name": "n2-name", "runtime": "node" })
        );
        assert_eq!(
            n2.rooms()
                .iter()
                .map(String::as_str)
                .collect::<BTreeSet<_>>(),
            BTreeSet::from(["lobby", "vip", users.id("n2").as_str()])
        );
        assert_eq!(n2.node(), None, "a Node.js socket has no Rust node name");
        assert_eq!(n2.handshake().query["EIO"], json!("4"));
        assert!(n2.handshake().url.starts_with("/socket.io/"));
        assert!(n2.handshake().issued > 0);
    }

    // The admin API lists Node.js sockets too, and can target them by user id.
    let admin = reqwest::Client::new();
    let listed: Value = admin
        .get(mixed.rust[0].url("/api/sockets?room=vip"))
        .bearer_auth(cluster_tests::ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let n2 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(users.id("n2")))
        .expect("admin lists the Node.js socket");
    assert_eq!(n2["data"], json!({ "userId": "n2", "name": "n2-name" }));
    Ok(())
}

in_both_response_modes!(room_changes_and_disconnects_cross_both_ways);
async fn room_changes_and_disconnects_cross_both_ways(mixed: &Mixed) -> anyhow::Result<()> {
    let mut users = Users::new(mixed).await;
    let lobby = ["r1", "r2", "n1", "n2"];
    let extra_members = || mixed.members(0, "extra");
    // socketsJoin from Node.js: the lobby joins `extra` on every node, so a Rust broadcast to
    // `extra` reaches them.
    mixed
        .node
        .call(
            "socketsJoin",
            json!({ "rooms": ["lobby"], "join": ["extra"] }),
        )
        .await?;
    wait_for(extra_members, users.ids(&lobby)).await?;
    mixed
        .cluster(1)
        .emit("/", &Target::rooms(["extra"]), "extra", vec![json!(1)])
        .await?;
    users.assert_received("extra", &[json!(1)], &lobby).await;

    // socketsLeave from Node.js, for the `vip` part.
    mixed
        .node
        .call(
            "socketsLeave",
            json!({ "rooms": ["vip"], "leave": ["extra"] }),
        )
        .await?;
    wait_for(extra_members, users.ids(&["r1", "n1"])).await?;

    // socketsJoin / socketsLeave from Rust, checked through Node.js.
    let node_view = |room: &'static str| async move {
        let sockets = mixed
            .node
            .call("fetchSockets", json!({ "rooms": [room] }))
            .await
            .unwrap();
        ids_of(&sockets)
    };
    mixed
        .cluster(0)
        .add_sockets(
            "/",
            &Target::all().except(["lobby"]),
            vec!["outside".into()],
        )
        .await?;
    wait_for(|| node_view("outside"), users.ids(&["r3", "n3"])).await?;
    mixed
        .node
        .call(
            "emit",
            json!({ "rooms": ["outside"], "event": "out", "args": [] }),
        )
        .await?;
    users.assert_received("out", &[], &["r3", "n3"]).await;
    mixed
        .cluster(1)
        .del_sockets("/", &Target::rooms(["outside"]), vec!["outside".into()])
        .await?;
    wait_for(|| node_view("outside"), BTreeSet::new()).await?;

    // disconnectSockets from Node.js (vip), then from Rust (the rest of the lobby).
    mixed
        .node
        .call("disconnectSockets", json!({ "rooms": ["vip"] }))
        .await?;
    users.assert_disconnected(&["r2", "n2"]).await;
    mixed
        .cluster(0)
        .disconnect_sockets("/", &Target::rooms(["lobby"]), false)
        .await?;
    users.assert_disconnected(&["r1", "n1"]).await;
    Ok(())
}

in_both_response_modes!(admin_room_changes_answer_promptly_in_a_mixed_cluster);
/// The admin API's join, leave and disconnect in a mixed cluster: the chat's room change is a
/// server-side event only `chat-server` nodes handle, so the Node.js node (which hears it and
/// never answers) is not waited for. Each call answers promptly and is effective wherever its
/// socket is: on the Node.js node, on the other Rust node and on the node asked.
async fn admin_room_changes_answer_promptly_in_a_mixed_cluster(
    mixed: &Mixed,
) -> anyhow::Result<()> {
    // Waiting for the Node.js node cost the whole request timeout (5 s). The printed response
    // times are the figures (10-40 ms in debug builds here); the bound only tells the two
    // apart on a loaded CI machine, not a speed target.
    const PROMPT: Duration = Duration::from_secs(1);
    let mut users = Users::new(mixed).await;
    let admin = Admin::new();
    // POSTs `body` to Rust node `i`'s admin API, which must answer `{ ok: true }`; how long it took.
    let post = |i: usize, path: &'static str, body: Value| {
        let admin = &admin;
        async move {
            let started = Instant::now();
            let answer = admin.post(&mixed.rust[i], path, body).await?;
            anyhow::ensure!(answer == json!({ "ok": true }), "{path} answered {answer}");
            anyhow::Ok(started.elapsed())
        }
    };
    let staff_members = || mixed.members(1, "staff");
    // (user, the Rust node whose admin API is asked)
    for (user, asked) in [("n1", 0), ("r1", 1), ("r2", 1)] {
        let id = users.id(user);
        let target = json!({ "target": { "socketId": id }, "rooms": ["staff"] });
        let took = post(asked, "/api/sockets/join", target.clone()).await?;
        println!("admin join of {user} via rust-{asked}: {took:?}");
        assert!(took < PROMPT, "the join of {user} took {took:?}");
        wait_for(staff_members, BTreeSet::from([id.clone()])).await?;
        mixed
            .node
            .call(
                "emit",
                json!({ "rooms": ["staff"], "event": "staff", "args": [user] }),
            )
            .await?;
        users
            .assert_received("staff", &[json!(user)], &[user])
            .await;
        if user.starts_with('r') {
            // On a chat-server node the join is the chat's: the socket may post in the room.
            let client = &mut users.all.iter_mut().find(|(u, _)| *u == user).unwrap().1;
            let ack = client
                .emit_with_ack("message", &[json!({ "room": "staff", "text": "hi" })])
                .await?;
            assert_eq!(ack[0]["ok"], json!(true), "{user} may post: {ack:?}");
            let message = ack[0]["message"].clone();
            users.assert_received("message", &[message], &[user]).await;
        }
        let took = post(asked, "/api/sockets/leave", target).await?;
        println!("admin leave of {user} via rust-{asked}: {took:?}");
        assert!(took < PROMPT, "the leave of {user} took {took:?}");
        wait_for(staff_members, BTreeSet::new()).await?;
    }
    // The reverse: Node.js joins a Rust socket (it waits for nobody), seen by the Rust nodes.
    let started = Instant::now();
    mixed
        .node
        .call(
            "socketsJoin",
            json!({ "rooms": [users.id("r1")], "join": ["staff"] }),
        )
        .await?;
    assert!(started.elapsed() < PROMPT);
    wait_for(staff_members, users.ids(&["r1"])).await?;
    for (user, asked) in [("n2", 0), ("r1", 1), ("r2", 1)] {
        let target = json!({ "target": { "socketId": users.id(user) } });
        let took = post(asked, "/api/sockets/disconnect", target).await?;
        println!("admin disconnect of {user} via rust-{asked}: {took:?}");
        assert!(took < PROMPT, "the disconnect of {user} took {took:?}");
        users.assert_disconnected(&[user]).await;
    }
    Ok(())
}

in_both_response_modes!(remote_socket_actions_reach_every_kind_of_node);
/// `RemoteSocket` from `fetch_sockets` acts on its socket wherever it is, as Node's does: this
/// node, the other Rust node and the Node.js node.
async fn remote_socket_actions_reach_every_kind_of_node(mixed: &Mixed) -> anyhow::Result<()> {
    let mut users = Users::new(mixed).await;
    let sockets = mixed
        .cluster(0)
        .fetch_sockets("/", &Target::rooms(["lobby"]))
        .await?;
    let solo_members = || mixed.members(1, "solo");
    // r1 is on the asking node, r2 on the other Rust node, n1 on the Node.js node.
    for user in ["r1", "r2", "n1"] {
        let id = users.id(user);
        let socket = sockets
            .iter()
            .find(|s| s.id() == id)
            .unwrap_or_else(|| panic!("{user} is fetched"));
        socket.emit("hello", vec![json!(user)]).await?;
        users
            .assert_received("hello", &[json!(user)], &[user])
            .await;
        let ack = socket
            .emit_with_ack("ask", vec![json!(1)], Duration::from_secs(2))
            .await?;
        assert_eq!(ack, Some(json!(user)), "{user} acks with its id");
        users.assert_received("ask", &[json!(1)], &[user]).await;
        socket.join(vec!["solo".into()]).await?;
        wait_for(solo_members, BTreeSet::from([id.clone()])).await?;
        socket.leave(vec!["solo".into()]).await?;
        wait_for(solo_members, BTreeSet::new()).await?;
        socket.disconnect(false).await?;
        users.assert_disconnected(&[user]).await;
    }
    Ok(())
}

/// Server-side events a node heard: name and arguments.
type EventLog = Arc<Mutex<Vec<(String, Vec<Value>)>>>;

in_both_response_modes!(server_side_emit_crosses_both_ways);
async fn server_side_emit_crosses_both_ways(mixed: &Mixed) -> anyhow::Result<()> {
    // Each Rust node records what it hears and acknowledges with its name.
    let heard: Vec<EventLog> = (0..2).map(|_| Arc::default()).collect();
    for (i, log) in heard.iter().enumerate() {
        let log = log.clone();
        mixed.cluster(i).on_server_event("/", move |ev| {
            log.lock()
                .unwrap()
                .push((ev.event.clone(), ev.args.clone()));
            let ack = json!({ "from": format!("rust-{i}"), "event": ev.event, "args": ev.args });
            async move { Some(ack) }
        });
    }

    // Node.js → Rust, without and with acks.
    mixed
        .node
        .call(
            "serverSideEmit",
            json!({ "event": "hello", "args": ["from node", 1] }),
        )
        .await?;
    for log in &heard {
        let expected = ("hello".to_string(), vec![json!("from node"), json!(1)]);
        wait_for(|| async { log.lock().unwrap().clone() }, vec![expected]).await?;
    }
    let reply = mixed
        .node
        .call(
            "serverSideEmit",
            json!({ "event": "ask", "args": [{ "q": 1 }], "ack": true }),
        )
        .await?;
    let from: BTreeSet<&str> = reply["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["from"].as_str().unwrap())
        .collect();
    assert_eq!(from, BTreeSet::from(["rust-0", "rust-1"]));

    // Rust → Node.js (and the other Rust node), without and with acks.
    mixed
        .cluster(0)
        .server_side_emit("/", "hello", vec![json!("from rust")])
        .await?;
    let node_heard = || async {
        let events = mixed.node.call("serverEvents", json!({})).await.unwrap();
        events.as_array().unwrap().clone()
    };
    wait_for(
        node_heard,
        vec![json!({ "nsp": "/", "event": "hello", "args": ["from rust"] })],
    )
    .await?;
    let acks = mixed
        .cluster(0)
        .server_side_emit_with_ack("/", "ask", vec![json!({ "q": 2 })])
        .await?;
    let from: BTreeSet<&str> = acks.iter().map(|a| a["from"].as_str().unwrap()).collect();
    assert_eq!(from, BTreeSet::from(["node-0", "rust-1"]));
    let node_ack = acks.iter().find(|a| a["from"] == json!("node-0")).unwrap();
    assert_eq!(node_ack["args"], json!([{ "q": 2 }]));
    Ok(())
}

in_both_response_modes!(all_rooms_and_server_count_agree);
async fn all_rooms_and_server_count_agree(mixed: &Mixed) -> anyhow::Result<()> {
    let users = Users::new(mixed).await;
    let mut expected: BTreeSet<String> = ["lobby", "vip"].map(String::from).into();
    expected.extend(users.all.iter().map(|(_, c)| c.id.clone()));

    let node_rooms = mixed.node.call("allRooms", json!({})).await?;
    let node_rooms: BTreeSet<String> = serde_json::from_value(node_rooms)?;
    assert_eq!(node_rooms, expected, "allRooms on Node.js");
    for i in 0..2 {
        let rooms: BTreeSet<String> = mixed.cluster(i).rooms("/").await?.into_iter().collect();
        assert_eq!(rooms, expected, "rooms on rust-{i}");
        assert_eq!(mixed.cluster(i).server_count("/").await?, 3);
    }
    assert_eq!(mixed.node.call("serverCount", json!({})).await?, json!(3));
    Ok(())
}

/// A Node.js node killed with SIGKILL while a Rust request waits for it (it was frozen first, so
/// it never answered): the request completes soon after the kill, not at its timeout. Rust
/// nodes count Node.js nodes through NUMSUB, which drops with the connection. Requests after
/// the kill answer at once with the survivors' sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_js_node_does_not_stall_rust_requests() -> anyhow::Result<()> {
    let mut mixed = Mixed::start("killed_node_js", true).await?;
    let users = Users::new(&mixed).await;
    let rust_ids = users.ids(&["r1", "r2", "r3"]);

    mixed.node.freeze().await?;
    let cluster = mixed.cluster(0).clone();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { cluster.fetch_sockets("/", &Target::all()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !in_flight.is_finished(),
        "the frozen node must hold the request"
    );
    mixed.node.kill().await?;
    let sockets = in_flight.await??;
    let in_flight_took = started.elapsed();
    let ids: BTreeSet<String> = sockets.into_iter().map(|s| s.id().to_owned()).collect();
    assert_eq!(ids, rust_ids);
    // The test nodes' request timeout is 3 s; NUMSUB is asked again every 300 ms.
    assert!(
        in_flight_took < Duration::from_millis(1500),
        "the request in flight took {in_flight_took:?}"
    );

    let started = Instant::now();
    let sockets = mixed.cluster(0).fetch_sockets("/", &Target::all()).await?;
    let fetch = started.elapsed();
    let ids: BTreeSet<String> = sockets.into_iter().map(|s| s.id().to_owned()).collect();
    assert_eq!(ids, rust_ids);

    let started = Instant::now();
    let rooms = mixed.cluster(1).rooms("/").await?;
    assert!(rooms.contains("lobby"));
    let acks = mixed
        .cluster(0)
        .emit_with_ack(
            "/",
            &Target::rooms(["lobby"]),
            "poll",
            vec![],
            Duration::from_secs(2),
        )
        .await?;
    assert_eq!(acks.len(), 2);
    assert_eq!(mixed.cluster(1).server_count("/").await?, 2);
    let others = started.elapsed();
    // The request timeout of the test nodes is 3 s: a request waiting for the dead node would
    // take that long and fail.
    assert!(
        fetch < Duration::from_millis(500) && others < Duration::from_millis(500),
        "requests after the kill took {fetch:?} and {others:?}"
    );
    Ok(())
}

/// A Rust node (the real binary) killed with SIGKILL: Node.js requests right after it answer at
/// once with the survivors' sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rust_node_does_not_stall_node_js_requests() -> anyhow::Result<()> {
    let mixed = Mixed::start("killed_rust", true).await?;
    let mut doomed = NodeProcess::start(
        "rust-doomed",
        free_port()?,
        &[("REDIS_URL", &mixed.redis.url()), ("REDIS_KEY", &mixed.key)],
    )
    .await?;
    mixed.settle(4).await?;
    let users = Users::new(&mixed).await;
    let auth = json!({ "userId": "doomed", "name": "doomed" });
    let mut on_doomed = Client::connect(doomed.port, "/", auth, json!("doomed")).await?;
    let ack = on_doomed
        .emit_with_ack("join", &[json!({ "room": "lobby" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true));
    let (before, _) = mixed
        .node
        .call_timed("fetchSockets", json!({ "rooms": ["lobby"] }))
        .await?;
    assert_eq!(before.as_array().unwrap().len(), 5);

    doomed.child.kill().await?;
    // Node.js counts the servers by the request channel's subscribers: the dead node's go once
    // Redis has read the end of its connections, which a loaded machine may take a moment to do.
    let counted = Instant::now();
    loop {
        let (count, _) = mixed.node.call_timed("serverCount", json!({})).await?;
        if count == json!(3) {
            break;
        }
        assert!(
            counted.elapsed() < Duration::from_secs(2),
            "Node.js still counts {count} servers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (after, took) = mixed
        .node
        .call_timed("fetchSockets", json!({ "rooms": ["lobby"] }))
        .await?;
    assert_eq!(ids_of(&after), users.ids(&["r1", "r2", "n1", "n2"]));
    let (acks, acks_took) = mixed
        .node
        .call_timed(
            "emit",
            json!({ "rooms": ["lobby"], "event": "poll", "args": [], "ackTimeoutMs": 2000 }),
        )
        .await?;
    assert_eq!(acks["acks"].as_array().unwrap().len(), 4);
    // Node.js's requestsTimeout is 3 s here: waiting for the dead node would take that long.
    assert!(
        took < Duration::from_millis(500) && acks_took < Duration::from_millis(500),
        "Node.js requests after the kill took {took:?} and {acks_took:?}"
    );
    Ok(())
}

/// @socket.io/redis-emitter, as another service uses it, with the `key` option (the cluster's
/// key) and without it (the default `socket.io`): emits to a room and to everyone, room changes,
/// disconnects and server-side events reach the Rust nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_emitter_reaches_rust_clients() -> anyhow::Result<()> {
    init_tracing();
    let redis = TestRedis::start().await?;
    for key in [Some(unique_key("emitter")), None] {
        let cluster_key = key.clone().unwrap_or_else(|| "socket.io".to_string());
        let mut nodes = Vec::new();
        for i in 0..2 {
            let config = chat_config(&format!("rust-{i}"), Some(&redis.url()), &cluster_key);
            nodes.push(ChatNode::start(config).await?);
        }
        let heard: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = heard.clone();
        nodes[1].chat.cluster.on_server_event("/", move |ev| {
            log.lock().unwrap().push(ev.event);
            async { None }
        });
        let mut clients = Vec::new();
        for (i, (user, room)) in [("e1", "lobby"), ("e2", "lobby"), ("e3", "other")]
            .into_iter()
            .enumerate()
        {
            let auth = json!({ "userId": user });
            let mut client = Client::connect(nodes[i % 2].port, "/", auth, json!(user)).await?;
            let ack = client
                .emit_with_ack("join", &[json!({ "room": room })])
                .await?;
            assert_eq!(ack[0]["ok"], json!(true));
            clients.push(client);
        }
        let order = |order: Value| {
            let mut order = order;
            if let Some(key) = &key {
                order["key"] = json!(key);
            }
            order
        };
        let redis_url = redis.url();
        let publish = |o: Value| emitter(&redis_url, order(o));

        publish(json!({ "op": "emit", "rooms": ["lobby"], "event": "news", "args": ["room"] }))
            .await?;
        for client in &mut clients[..2] {
            assert_eq!(client.event("news").await?, vec![json!("room")]);
        }
        assert!(clients[2].events_within("news", QUIET).await.is_empty());

        publish(json!({ "op": "emit", "event": "news", "args": ["all"] })).await?;
        for client in &mut clients {
            assert_eq!(client.event("news").await?, vec![json!("all")]);
        }

        publish(json!({ "op": "socketsJoin", "rooms": ["other"], "join": ["lobby"] })).await?;
        let cluster = &nodes[0].chat.cluster;
        let lobby = || async {
            let sockets = cluster.fetch_sockets("/", &Target::rooms(["lobby"])).await;
            sockets.unwrap().len()
        };
        wait_for(lobby, 3).await?;
        publish(json!({ "op": "socketsLeave", "rooms": ["other"], "leave": ["lobby"] })).await?;
        wait_for(lobby, 2).await?;

        publish(json!({ "op": "serverSideEmit", "event": "refresh", "args": [] })).await?;
        wait_for(
            || async { heard.lock().unwrap().clone() },
            vec!["refresh".into()],
        )
        .await?;

        publish(json!({ "op": "disconnectSockets", "rooms": ["other"] })).await?;
        clients[2].disconnected().await?;
        assert!(
            !clients[0]
                .drain(QUIET)
                .await
                .contains(&cluster_tests::Received::Disconnected)
        );
        for node in &nodes {
            node.stop();
        }
    }
    Ok(())
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.into_iter().map(String::from).collect()
}

/// The ids of sockets fetched through Node.js.
fn ids_of(sockets: &Value) -> BTreeSet<String> {
    let sockets = sockets.as_array().expect("an array of sockets");
    sockets
        .iter()
        .map(|s| s["id"].as_str().expect("an id").to_string())
        .collect()
}

/// The strings of a JSON array, as a set.
fn strings(array: &Value) -> BTreeSet<String> {
    let items = array.as_array().expect("an array");
    items
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// Polls `probe` until it returns `expected` (5 s at most).
async fn wait_for<T, F, Fut>(probe: F, expected: T) -> anyhow::Result<()>
where
    T: PartialEq + std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + cluster_tests::WAIT;
    loop {
        let got = probe().await;
        if got == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "still {got:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
