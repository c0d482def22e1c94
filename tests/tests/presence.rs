//! Presence and leave timers: the same rules checked on Redis (Lua scripts) and in memory. On
//! Redis, presence is split in four shards (as on a Redis Cluster; `TEST_REDIS=cluster` runs it on
//! one), so every rule is checked across shards too.

use std::time::Duration;

use cluster_tests::TestRedis;
use socketio_cluster::{
    RedisDriver, RedisDriverConfig,
    keys::PresenceKeys,
    presence::{Departure, Joined, Left, Member, MemoryPresence, PresenceStore, RedisPresence},
};

const GRACE: Duration = Duration::from_millis(200);
const LEASE: Duration = Duration::from_millis(300);

fn user(id: &str) -> Member {
    Member {
        id: id.into(),
        name: format!("name-{id}"),
    }
}

async fn redis_pair(key: &str) -> anyhow::Result<(TestRedis, RedisPresence, RedisPresence)> {
    let redis = TestRedis::start().await?;
    let driver = RedisDriver::connect(RedisDriverConfig::new(redis.url())).await?;
    let keys = PresenceKeys::sharded(key, 4);
    let a = RedisPresence::with_keys(driver.client().clone(), keys.clone(), "node-a");
    let b = RedisPresence::with_keys(driver.client().clone(), keys, "node-b");
    Ok((redis, a, b))
}

fn memory_pair() -> (MemoryPresence, MemoryPresence) {
    let a = MemoryPresence::new("node-a");
    let b = a.for_node("node-b");
    (a, b)
}

macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test]
            async fn redis() -> anyhow::Result<()> {
                let (_redis, a, b) = redis_pair(stringify!($scenario)).await?;
                super::$scenario(&a, &b).await
            }

            #[tokio::test]
            async fn memory() -> anyhow::Result<()> {
                let (a, b) = memory_pair();
                super::$scenario(&a, &b).await
            }
        }
    };
}

on_both_stores!(refresh_within_grace_on_another_node_is_silent);
async fn refresh_within_grace_on_another_node_is_silent<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    assert_eq!(
        a.join("/", "r", &user("u"), "s1").await?,
        Joined::CameOnline
    );
    assert_eq!(a.leave("/", "r", "s1", Some(GRACE)).await?, Left::Pending);
    assert_eq!(
        a.online("/", "r").await?,
        vec![user("u")],
        "still online during the grace"
    );
    assert_eq!(b.join("/", "r", &user("u"), "s2").await?, Joined::Rejoined);
    tokio::time::sleep(GRACE * 2).await;
    assert!(a.claim_due(100, LEASE).await?.is_empty());
    assert!(b.claim_due(100, LEASE).await?.is_empty());
    assert_eq!(b.online("/", "r").await?, vec![user("u")]);
    Ok(())
}

on_both_stores!(leave_timer_fires_exactly_once_across_nodes);
async fn leave_timer_fires_exactly_once_across_nodes<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    a.join("/", "r", &user("u"), "s1").await?;
    a.join("/", "r", &user("v"), "s2").await?;
    a.leave("/", "r", "s1", Some(GRACE)).await?;
    assert!(
        a.claim_due(100, LEASE).await?.is_empty(),
        "not before the grace"
    );
    tokio::time::sleep(GRACE + Duration::from_millis(50)).await;
    let (from_a, from_b) = tokio::join!(a.claim_due(100, LEASE), b.claim_due(100, LEASE));
    let mut claimed = from_a?;
    claimed.extend(from_b?);
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(
        claimed[0],
        Departure {
            nsp: "/".into(),
            room: "r".into(),
            user: user("u"),
            id: claimed[0].id.clone(),
        }
    );
    assert_eq!(a.online("/", "r").await?, vec![user("v")]);
    assert!(a.claim_due(100, LEASE).await?.is_empty());
    a.settle(&claimed[0]).await?;
    tokio::time::sleep(LEASE + Duration::from_millis(50)).await;
    assert!(
        b.claim_due(100, LEASE).await?.is_empty(),
        "a settled departure is never claimed again"
    );
    Ok(())
}

on_both_stores!(an_unsettled_departure_is_claimed_again_with_its_id);
async fn an_unsettled_departure_is_claimed_again_with_its_id<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    a.join("/", "r", &user("u"), "s1").await?;
    a.leave("/", "r", "s1", Some(Duration::ZERO)).await?;
    let first = a.claim_due(100, LEASE).await?;
    assert_eq!(first.len(), 1);
    // a dies (or is refused) before announcing: nobody else may claim it during the lease...
    assert!(b.claim_due(100, LEASE).await?.is_empty());
    tokio::time::sleep(LEASE + Duration::from_millis(50)).await;
    // ...and then b does, with the same id, until one of them settles it.
    let again = b.claim_due(100, LEASE).await?;
    assert_eq!(again, first);
    b.settle(&again[0]).await?;
    tokio::time::sleep(LEASE + Duration::from_millis(50)).await;
    assert!(a.claim_due(100, LEASE).await?.is_empty());
    // The user's next departure has another id.
    a.join("/", "r", &user("u"), "s2").await?;
    a.leave("/", "r", "s2", Some(Duration::ZERO)).await?;
    let next = a.claim_due(100, LEASE).await?;
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].id, first[0].id);
    Ok(())
}

on_both_stores!(a_user_back_before_the_notice_is_not_announced_again);
async fn a_user_back_before_the_notice_is_not_announced_again<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    a.join("/", "r", &user("u"), "s1").await?;
    a.leave("/", "r", "s1", Some(Duration::ZERO)).await?;
    assert_eq!(a.claim_due(100, LEASE).await?.len(), 1);
    // The claimer dies; the user comes back before the lease ends.
    b.join("/", "r", &user("u"), "s2").await?;
    tokio::time::sleep(LEASE + Duration::from_millis(50)).await;
    assert!(b.claim_due(100, LEASE).await?.is_empty());
    assert_eq!(b.online("/", "r").await?, vec![user("u")]);
    Ok(())
}

on_both_stores!(a_node_reaped_while_alive_finds_itself_forgotten);
async fn a_node_reaped_while_alive_finds_itself_forgotten<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(200);
    assert!(
        a.reap(timeout, GRACE).await?.forgotten,
        "a new node is unknown"
    );
    assert!(!a.reap(timeout, GRACE).await?.forgotten);
    b.reap(timeout, GRACE).await?;
    a.join("/", "r", &user("u"), "s1").await?;
    // a stalls; b takes its sockets over.
    let deadline = tokio::time::Instant::now() + timeout * 2;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.reap(timeout, GRACE).await?;
    }
    let back = a.reap(timeout, GRACE).await?;
    assert!(back.forgotten, "a learns it was reaped");
    assert!(back.taken_over.is_empty());
    // a registers its live socket again: its leave timer is cancelled.
    assert_eq!(a.join("/", "r", &user("u"), "s1").await?, Joined::Rejoined);
    tokio::time::sleep(GRACE + Duration::from_millis(50)).await;
    assert!(b.claim_due(100, LEASE).await?.is_empty());
    assert_eq!(b.online("/", "r").await?, vec![user("u")]);
    Ok(())
}

on_both_stores!(two_tabs_keep_a_user_online);
async fn two_tabs_keep_a_user_online<S: PresenceStore>(a: &S, b: &S) -> anyhow::Result<()> {
    assert_eq!(
        a.join("/", "r", &user("u"), "tab1").await?,
        Joined::CameOnline
    );
    assert_eq!(
        b.join("/", "r", &user("u"), "tab2").await?,
        Joined::AlreadyOnline
    );
    assert_eq!(
        a.leave("/", "r", "tab1", Some(GRACE)).await?,
        Left::StillOnline
    );
    assert_eq!(
        b.leave("/", "r", "tab2", None).await?,
        Left::WentOffline(user("u"))
    );
    assert!(a.online("/", "r").await?.is_empty());
    assert_eq!(a.leave("/", "r", "tab2", None).await?, Left::Absent);
    Ok(())
}

on_both_stores!(explicit_leave_is_immediate_and_cancels_nothing_later);
async fn explicit_leave_is_immediate_and_cancels_nothing_later<S: PresenceStore>(
    a: &S,
    _b: &S,
) -> anyhow::Result<()> {
    a.join("/", "r", &user("u"), "s1").await?;
    assert_eq!(
        a.leave("/", "r", "s1", None).await?,
        Left::WentOffline(user("u"))
    );
    tokio::time::sleep(GRACE).await;
    assert!(a.claim_due(100, LEASE).await?.is_empty());
    Ok(())
}

on_both_stores!(namespaces_and_rooms_are_isolated);
async fn namespaces_and_rooms_are_isolated<S: PresenceStore>(a: &S, _b: &S) -> anyhow::Result<()> {
    a.join("/", "r", &user("u"), "s1").await?;
    a.join("/other", "r", &user("w"), "s2").await?;
    assert_eq!(a.online("/", "r").await?, vec![user("u")]);
    assert_eq!(a.online("/other", "r").await?, vec![user("w")]);
    assert!(a.online("/", "r2").await?.is_empty());
    assert_eq!(a.count("/", "r").await?, 1);
    assert_eq!(a.count("/", "r2").await?, 0);
    assert!(a.join("/", "bad\nroom", &user("u"), "s3").await.is_err());
    assert!(a.join("/bad|ns", "r", &user("u"), "s3").await.is_err());
    assert!(a.join("/", "r", &user("bad\nid"), "s3").await.is_err());
    Ok(())
}

on_both_stores!(a_dead_nodes_users_get_one_leave_timer_each);
async fn a_dead_nodes_users_get_one_leave_timer_each<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(300);
    a.reap(timeout, GRACE).await?;
    b.reap(timeout, GRACE).await?;
    a.join("/", "r", &user("u"), "s1").await?;
    a.join("/", "r2", &user("u"), "s2").await?;
    b.join("/", "r", &user("v"), "s3").await?;
    // Twelve more rooms: on Redis, the rooms spread over the four presence shards.
    let mut expected = vec![
        ("r".to_string(), "u".to_string()),
        ("r2".into(), "u".into()),
    ];
    for i in 0..12 {
        let (room, id) = (format!("room-{i}"), format!("w{i}"));
        a.join("/", &room, &user(&id), &format!("t{i}")).await?;
        expected.push((room, id));
    }
    expected.sort();
    // Node a stops heartbeating; node b keeps going and takes over after the timeout, once.
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_millis(150);
    let mut reaped = Vec::new();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        reaped.extend(b.reap(timeout, GRACE).await?.taken_over);
    }
    // On Redis each presence shard keeps its own heartbeat of a node, written one after the
    // other: a loaded machine may see some shards' expire a reap before the others', and take
    // the node's users over in two reaps. Each user still leaves each room once (below).
    reaped.dedup();
    assert_eq!(reaped, vec!["node-a".to_string()]);
    assert_eq!(
        b.online("/", "r").await?.len(),
        2,
        "online until the grace ends"
    );
    tokio::time::sleep(GRACE + Duration::from_millis(50)).await;
    let mut claimed: Vec<(String, String)> = b
        .claim_due(100, LEASE)
        .await?
        .into_iter()
        .map(|d| (d.room, d.user.id))
        .collect();
    claimed.sort();
    assert_eq!(claimed, expected, "each user leaves each room exactly once");
    assert_eq!(b.online("/", "r").await?, vec![user("v")]);
    assert!(b.online("/", "room-0").await?.is_empty());
    Ok(())
}

on_both_stores!(a_node_back_from_an_outage_reaps_nobody);
async fn a_node_back_from_an_outage_reaps_nobody<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(200);
    a.reap(timeout, GRACE).await?;
    b.reap(timeout, GRACE).await?;
    a.join("/", "r", &user("u"), "s1").await?;
    // Neither node reached the store for longer than the timeout (a Redis outage).
    tokio::time::sleep(timeout + Duration::from_millis(100)).await;
    assert!(
        b.reap(timeout, GRACE).await?.taken_over.is_empty(),
        "b's own heartbeat was stale too"
    );
    a.reap(timeout, GRACE).await?;
    assert!(
        b.reap(timeout, GRACE).await?.taken_over.is_empty(),
        "a is back"
    );
    assert_eq!(b.online("/", "r").await?, vec![user("u")]);
    Ok(())
}

on_both_stores!(a_retiring_nodes_leftover_sockets_get_leave_timers);
async fn a_retiring_nodes_leftover_sockets_get_leave_timers<S: PresenceStore>(
    a: &S,
    b: &S,
) -> anyhow::Result<()> {
    a.join("/", "r", &user("u"), "s1").await?;
    a.retire(GRACE).await?;
    b.join("/", "r", &user("u"), "s2").await?;
    tokio::time::sleep(GRACE + Duration::from_millis(50)).await;
    assert!(
        b.claim_due(100, LEASE).await?.is_empty(),
        "came back on another node in time"
    );
    Ok(())
}
