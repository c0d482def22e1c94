//! Pages of history (`shared/PROTOCOL.md`, `history` and paged recovery): a client away for
//! more than one join ack recovers everything it missed by paging on with `history { after }`,
//! while messages keep coming; scrollback pages back to the room's first kept message; and the
//! edges (positions the room no longer keeps, another epoch, rooms the socket is not in, bad
//! requests) answer as the contract says, on Redis (2 nodes; sharded with `TEST_REDIS=cluster`)
//! and on the in-memory single node.

use std::{collections::BTreeMap, time::Instant};

use chat_server::config::Config;
use cluster_tests::{ChatNode, Client, TestRedis, chat_config, chat_nodes, unique_key};
use futures_util::future::join_all;
use serde_json::{Value, json};

const AWAY: usize = 2000;
const SENDERS: usize = 4;

fn generous(config: &mut Config) {
    config.history_len = 5000;
    config.rate_limit_per_sec = 1e6;
    config.rate_limit_burst = 1e6;
}

async fn joined(port: u16, user: &str, join: Value) -> anyhow::Result<(Client, Value)> {
    let mut client = Client::connect(port, "/", json!({ "userId": user }), json!(1)).await?;
    let mut ack = client.emit_with_ack("join", &[join]).await?;
    anyhow::ensure!(ack[0]["ok"] == json!(true), "join: {ack:?}");
    Ok((client, ack.swap_remove(0)))
}

async fn ask(client: &mut Client, request: Value) -> anyhow::Result<Value> {
    let mut ack = client.emit_with_ack("history", &[request]).await?;
    Ok(ack.swap_remove(0))
}

/// `count` messages from each of `senders`, their texts `{user} {i}`, acked.
async fn send_all(senders: &mut [Client], room: &str, count: usize) -> anyhow::Result<()> {
    let sends = senders
        .iter_mut()
        .enumerate()
        .map(|(s, client)| async move {
            for i in 0..count {
                let ack = client
                    .emit_with_ack(
                        "message",
                        &[json!({ "room": room, "text": format!("s{s} {i}") })],
                    )
                    .await?;
                anyhow::ensure!(ack[0]["ok"] == json!(true), "message: {ack:?}");
            }
            anyhow::Ok(())
        });
    join_all(sends).await.into_iter().collect()
}

/// Adds `messages` to `view` by seq; fails on two different messages with one seq.
fn merge(view: &mut BTreeMap<u64, Value>, messages: &[Value]) -> anyhow::Result<()> {
    for m in messages {
        let seq = m["seq"].as_u64().unwrap_or_default();
        if let Some(held) = view.insert(seq, m.clone()) {
            anyhow::ensure!(held["text"] == m["text"], "seq {seq} twice: {held} and {m}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_for_2000_messages_recovers_them_all_in_pages_while_the_room_goes_on()
-> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = chat_nodes(&redis.url(), "scrollback", 2, generous).await?;
    let room = json!({ "room": "busy" });
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        senders.push(
            joined(nodes[s % 2].port, &format!("sender-{s}"), room.clone())
                .await?
                .0,
        );
    }
    let (mut away, _) = joined(nodes[1].port, "away", room.clone()).await?;
    send_all(&mut senders[..1], "busy", 1).await?;
    let held = away.event("message").await?[0].clone();
    away.close();

    send_all(&mut senders, "busy", AWAY / SENDERS).await?;

    // Back, on the other node: the join carries the first page and says more follow.
    let started = Instant::now();
    let since = json!({ "epoch": held["epoch"], "seq": held["seq"] });
    let (mut back, ack) = joined(
        nodes[0].port,
        "away",
        json!({ "room": "busy", "since": since }),
    )
    .await?;
    assert_eq!(ack["recovered"], json!(true), "everything missed is kept");
    assert_eq!(
        ack["more"],
        json!(true),
        "{AWAY} messages do not fit one ack"
    );
    let mut view = BTreeMap::new();
    merge(&mut view, std::slice::from_ref(&held))?;
    let mut pages = vec![ack["history"].as_array().cloned().unwrap_or_default()];
    merge(&mut view, &pages[0])?;
    // The room goes on while the client pages: live messages arrive between its pages.
    let more_sends = {
        let mut senders = std::mem::take(&mut senders);
        tokio::spawn(async move {
            send_all(&mut senders, "busy", 5).await?;
            anyhow::Ok(senders)
        })
    };
    let mut more = true;
    while more {
        let last = view.values().next_back().cloned().unwrap_or_default();
        let page = ask(
            &mut back,
            json!({ "room": "busy", "after": { "epoch": last["epoch"], "seq": last["seq"] } }),
        )
        .await?;
        assert_eq!(page["ok"], json!(true), "{page}");
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(
            !messages.is_empty() || page["more"] == json!(false),
            "an empty page that says more"
        );
        merge(&mut view, &messages)?;
        more = page["more"] == json!(true);
        pages.push(messages);
    }
    let took = started.elapsed();
    more_sends.await??;
    let live = back
        .events_within("message", std::time::Duration::from_millis(500))
        .await;
    merge(
        &mut view,
        &live.iter().map(|args| args[0].clone()).collect::<Vec<_>>(),
    )?;
    let total = 1 + AWAY + SENDERS * 5;
    let seqs: Vec<u64> = view.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=total as u64).collect::<Vec<_>>(),
        "every message once, in order"
    );
    let texts: Vec<&str> = view.values().filter_map(|m| m["text"].as_str()).collect();
    for s in 0..SENDERS {
        let mine: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| t.starts_with(&format!("s{s} ")))
            .collect();
        let expected = if s == 0 {
            1 + AWAY / SENDERS + 5
        } else {
            AWAY / SENDERS + 5
        };
        assert_eq!(mine.len(), expected, "sender {s}'s messages");
    }
    println!(
        "a client away for {AWAY} messages recovered all of them (recovered: true) in {} pages (the join ack and {} `history` pages of up to {} messages) in {took:?}; {} live messages merged by seq",
        pages.len(),
        pages.len() - 1,
        pages.iter().map(Vec::len).max().unwrap_or(0),
        live.len()
    );

    // Scrollback: from the oldest message it holds, back to the room's first.
    let mut oldest = *view.keys().next_back().unwrap_or(&0);
    let mut scrolled = Vec::new();
    loop {
        let page = ask(
            &mut back,
            json!({ "room": "busy", "before": oldest, "limit": 300 }),
        )
        .await?;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        assert!(messages.len() <= 300, "a page holds at most its limit");
        let seqs: Vec<u64> = messages.iter().filter_map(|m| m["seq"].as_u64()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "a page in order");
        if let Some(&first) = seqs.first() {
            assert_eq!(
                *seqs.last().unwrap_or(&0),
                oldest - 1,
                "the page ends right before"
            );
            oldest = first;
        }
        scrolled.extend(seqs);
        if page["more"] != json!(true) {
            break;
        }
    }
    assert_eq!(oldest, 1, "scrollback reaches the room's first message");
    assert_eq!(scrolled.len(), total - 1);
    Ok(())
}

/// The edges of paging, on Redis and on the single node: a room keeping its last 10 of 30.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stop_at_the_kept_window_and_odd_requests_get_clear_answers() -> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let key = unique_key("pages");
    let small = |config: &mut Config| {
        generous(config);
        config.history_len = 10;
        config.history_page_max_len = 4;
    };
    let mut on_redis = chat_config("pages-redis", Some(&redis.url()), &key);
    small(&mut on_redis);
    let mut solo = chat_config("pages-solo", None, &key);
    small(&mut solo);
    let redis_node = ChatNode::start(on_redis).await?;
    let solo_node = ChatNode::solo(solo).await?;
    for (backend, port) in [("redis", redis_node.port), ("memory", solo_node.port)] {
        let (mut alice, _) = joined(port, "alice", json!({ "room": "r" })).await?;
        send_all(std::slice::from_mut(&mut alice), "r", 30).await?;
        let newest = ask(&mut alice, json!({ "room": "r", "limit": 100 })).await?;
        let seqs = |page: &Value| -> Vec<u64> {
            page["messages"].as_array().map_or(Vec::new(), |m| {
                m.iter().filter_map(|m| m["seq"].as_u64()).collect()
            })
        };
        assert_eq!(
            (seqs(&newest), &newest["more"]),
            (vec![27, 28, 29, 30], &json!(true)),
            "{backend}: capped at HISTORY_PAGE_MAX_LEN"
        );
        let epoch = newest["epoch"].clone();
        let edge = ask(&mut alice, json!({ "room": "r", "before": 25 })).await?;
        assert_eq!(
            (seqs(&edge), &edge["more"]),
            (vec![21, 22, 23, 24], &json!(false)),
            "{backend}: the kept window ends at 21"
        );
        let gone = ask(&mut alice, json!({ "room": "r", "before": 5 })).await?;
        assert_eq!(
            (seqs(&gone), &gone["more"]),
            (vec![], &json!(false)),
            "{backend}: before the window"
        );
        let gap = ask(
            &mut alice,
            json!({ "room": "r", "after": { "epoch": epoch, "seq": 5 }, "limit": 2 }),
        )
        .await?;
        assert_eq!(seqs(&gap), vec![21, 22], "{backend}: the gap shows");
        let other = ask(
            &mut alice,
            json!({ "room": "r", "after": { "epoch": "not-this-one", "seq": 5 } }),
        )
        .await?;
        assert_eq!(
            (seqs(&other), &other["more"], &other["epoch"]),
            (vec![], &json!(false), &epoch),
            "{backend}: another epoch"
        );
        let (_, rejoin) = joined(
            port,
            "bob",
            json!({ "room": "r", "since": { "epoch": epoch, "seq": 5 } }),
        )
        .await?;
        assert_eq!(
            rejoin["recovered"],
            json!(false),
            "{backend}: 6 to 20 are no longer kept"
        );
        let (mut carol, _) = joined(port, "carol", json!({ "room": "other" })).await?;
        let outsider = ask(&mut carol, json!({ "room": "r" })).await?;
        assert_eq!(outsider["error"]["code"], json!("not_in_room"), "{backend}");
        for bad in [
            json!({ "room": "r", "before": 5, "after": { "epoch": epoch, "seq": 1 } }),
            json!({ "room": "r", "limit": 0 }),
            json!({ "room": "r", "before": "five" }),
            json!({ "before": 5 }),
        ] {
            let answer = ask(&mut alice, bad.clone()).await?;
            assert_eq!(
                answer["error"]["code"],
                json!("bad_request"),
                "{backend}: {bad} → {answer}"
            );
        }
    }
    Ok(())
}
