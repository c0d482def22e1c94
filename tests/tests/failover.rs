//! A Redis Cluster master fails under chat load (self-protection 4): three sharded nodes, twelve
//! chatters in six rooms spread over the slots, each master with a replica. The master of the
//! first third of the slots is shut down while they send; its replica takes over. Every chatter
//! ends with every acked message of its room exactly once, in order, and none of them was told
//! that messages could not be recovered: a failover that lost nothing raises no alarm. Join acks
//! hold a few messages, so catching up pages on (`history { after }`) across the new epoch.

use std::time::{Duration, Instant};

use cluster_tests::{
    ChatNode, chat_config,
    chatter::{Chatter, ChatterStats},
    init_tracing,
    redis_cluster::RedisCluster,
    unique_key,
};
use futures_util::future::join_all;
use testcontainers_modules::testcontainers::core::ExecCommand;

const ROOMS: usize = 6;
const PER_ROOM: usize = 2;
const MESSAGES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_under_chat_load_loses_nothing_and_raises_no_false_alarm()
-> anyhow::Result<()> {
    init_tracing();
    let cluster = RedisCluster::with_replicas().await?;
    let key = unique_key("failover");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut config = chat_config(&format!("failover-{i}"), Some(&cluster.url()), &key);
        config.history_len = 1000;
        // Acks of a message or two: a chatter's catch-up across the failover takes pages, the
        // first of them after a position in the epoch before it.
        config.history_ack_bytes = 300;
        nodes.push(ChatNode::start(config).await?);
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let chatters = (0..ROOMS * PER_ROOM).map(|i| {
        let mut order = ports.clone();
        order.rotate_left(i % ports.len());
        let room = format!("room-{}", i / PER_ROOM);
        tokio::spawn(async move {
            let mut chatter = Chatter::join(&format!("c{i}"), &room, order).await?;
            for m in 0..MESSAGES {
                chatter.send(&format!("{room} c{i} m{m}")).await?;
                chatter.listen(Duration::from_millis(60)).await?;
            }
            chatter.listen(Duration::from_millis(500)).await?;
            chatter.catch_up().await?;
            anyhow::Ok(chatter)
        })
    });
    let chatters: Vec<_> = chatters.collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let victim = cluster.ports()[0];
    let killed = Instant::now();
    cluster
        .container()
        .exec(ExecCommand::new([
            "redis-cli",
            "-p",
            &victim.to_string(),
            "shutdown",
            "nosave",
        ]))
        .await?
        .stdout_to_vec()
        .await?;
    println!(
        "master 127.0.0.1:{victim} shut down while {} chatters send",
        ROOMS * PER_ROOM
    );

    let mut done = Vec::new();
    for handle in join_all(chatters).await {
        done.push(handle??);
    }
    // Everyone has sent: a last rejoin with `since` brings what came after a chatter stopped.
    for chatter in &mut done {
        chatter.catch_up().await?;
    }
    println!("every chatter done {:?} after the kill", killed.elapsed());
    let total = ChatterStats::total(&done);
    let (mut messages, mut failed_over) = (0, 0);
    for room in 0..ROOMS {
        let members = &done[room * PER_ROOM..(room + 1) * PER_ROOM];
        messages += check_room(&format!("room-{room}"), members)?;
        // A room of the killed master goes on in a new epoch; its first messages keep the old.
        let first_epoch = members[0]
            .view()
            .values()
            .next()
            .map(|m| m["epoch"].clone());
        if first_epoch.as_ref().and_then(|e| e.as_str()) != members[0].epoch() {
            failed_over += 1;
        }
    }
    println!("{messages} messages held by every member of their room; {total}");
    println!("{failed_over} of {ROOMS} rooms went on in a new epoch after the failover");
    assert_eq!(
        total.unrecovered_joins, 0,
        "a chatter was told messages could not be recovered: {total}"
    );
    assert_eq!(messages as usize, ROOMS * PER_ROOM * MESSAGES);
    assert!(failed_over > 0, "no room was on the killed master");
    Ok(())
}

/// Every member of `room` holds seqs 1..n with the same texts and clientIds, and the clientIds
/// are exactly the room's acked sends: nothing lost, nothing twice. (Ids and epochs may differ: a
/// message carried over by the failover reads with the new epoch's label in the history, with
/// the old one where it arrived live.)
fn check_room(room: &str, members: &[Chatter]) -> anyhow::Result<u64> {
    let content = |c: &Chatter| -> Vec<(u64, String, String)> {
        c.view()
            .iter()
            .map(|(seq, m)| (*seq, m["text"].to_string(), m["clientId"].to_string()))
            .collect()
    };
    let first = content(&members[0]);
    let n = first.len() as u64;
    let seqs: Vec<u64> = first.iter().map(|(seq, ..)| *seq).collect();
    anyhow::ensure!(seqs == (1..=n).collect::<Vec<_>>(), "{room}: seqs {seqs:?}");
    for member in &members[1..] {
        anyhow::ensure!(
            content(member) == first,
            "{room}: {} holds another room",
            member.name
        );
    }
    let mut client_ids: Vec<&String> = first.iter().map(|(.., id)| id).collect();
    client_ids.sort_unstable();
    client_ids.dedup();
    let sent: u64 = members.iter().map(|c| c.stats.sent).sum();
    anyhow::ensure!(
        client_ids.len() as u64 == n && n == sent,
        "{room}: {n} messages, {} distinct clientIds, {sent} acked sends",
        client_ids.len()
    );
    Ok(n)
}
