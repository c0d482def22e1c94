//! [`PresenceStore`] in Redis. Every change is one Lua script, so concurrent nodes never see a
//! half-applied state and a timer is claimed by one node only.
//!
//! Keys: see [`crate::keys`].

use std::{sync::LazyLock, time::Duration};

use fred::{
    clients::Client,
    interfaces::{HashesInterface, SetsInterface, SortedSetsInterface},
};

use super::{
    Departure, Joined, Left, Member, PresenceError, PresenceStore, Reap, check_all, departure,
    entry, place,
};
use fred::types::scripts::Script;

use crate::keys::{PresenceKeys, PresenceShard};

static JOIN: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("lua/join.lua")));
static LEAVE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("lua/leave.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("lua/claim.lua")));
static REAP: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("lua/reap.lua")));
static TAKE_OVER: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("lua/take_over.lua")));
static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("lua/settle.lua")));

/// Presence in Redis, for the node `node`.
#[derive(Clone)]
pub struct RedisPresence {
    client: Client,
    keys: PresenceKeys,
    node: String,
}

impl RedisPresence {
    /// `key` is the cluster's channel prefix; `node` this node's cluster uid. Every key in one
    /// hash slot: for a standalone Redis.
    pub fn new(client: Client, key: &str, node: impl Into<String>) -> Self {
        Self::with_keys(client, PresenceKeys::new(key), node)
    }

    /// Presence laid out by `keys`: [`PresenceKeys::sharded`] on a Redis Cluster.
    pub fn with_keys(client: Client, keys: PresenceKeys, node: impl Into<String>) -> Self {
        Self {
            client,
            keys,
            node: node.into(),
        }
    }

    fn room_keys(&self, place: &str) -> Vec<String> {
        let k = &self.keys;
        let shard = k.shard_of(place);
        vec![
            k.users(place),
            k.sockets(place),
            k.counts(place),
            k.timers(shard),
            k.node(shard, &self.node),
            k.claims(shard),
            k.claimed(shard),
        ]
    }

    fn claim_keys(&self, shard: PresenceShard) -> Vec<String> {
        vec![self.keys.claims(shard), self.keys.claimed(shard)]
    }
}

impl PresenceStore for RedisPresence {
    async fn join(
        &self,
        nsp: &str,
        room: &str,
        user: &Member,
        socket: &str,
    ) -> Result<Joined, PresenceError> {
        check_all(nsp, room, Some(&user.id))?;
        let place = place(nsp, room);
        let args = vec![
            user.id.clone(),
            user.name.clone(),
            socket.to_string(),
            entry(&place, &user.id),
            entry(&place, socket),
        ];
        let outcome: String = JOIN
            .evalsha_with_reload(&self.client, self.room_keys(&place), args)
            .await?;
        Ok(match outcome.as_str() {
            "online" => Joined::CameOnline,
            "rejoined" => Joined::Rejoined,
            _ => Joined::AlreadyOnline,
        })
    }

    async fn leave(
        &self,
        nsp: &str,
        room: &str,
        socket: &str,
        grace: Option<Duration>,
    ) -> Result<Left, PresenceError> {
        check_all(nsp, room, None)?;
        let place = place(nsp, room);
        let args = vec![
            socket.to_string(),
            grace.map(|g| g.as_millis().to_string()).unwrap_or_default(),
            format!("{place}\n"),
            entry(&place, socket),
        ];
        let reply: Vec<String> = LEAVE
            .evalsha_with_reload(&self.client, self.room_keys(&place), args)
            .await?;
        Ok(match reply.as_slice() {
            [kind, ..] if kind == "still" => Left::StillOnline,
            [kind, ..] if kind == "pending" => Left::Pending,
            [kind, id, name] if kind == "offline" => Left::WentOffline(Member {
                id: id.clone(),
                name: name.clone(),
            }),
            _ => Left::Absent,
        })
    }

    async fn online(&self, nsp: &str, room: &str) -> Result<Vec<Member>, PresenceError> {
        let users: Vec<(String, String)> = self
            .client
            .hgetall(self.keys.users(&place(nsp, room)))
            .await?;
        let mut members: Vec<Member> = users
            .into_iter()
            .map(|(id, name)| Member { id, name })
            .collect();
        members.sort();
        Ok(members)
    }

    async fn count(&self, nsp: &str, room: &str) -> Result<usize, PresenceError> {
        Ok(self.client.hlen(self.keys.users(&place(nsp, room))).await?)
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Departure>, PresenceError> {
        let mut claimed = Vec::new();
        for shard in self.keys.shards() {
            claimed.extend(self.claim_due_in(shard, limit, lease).await?);
        }
        Ok(claimed)
    }

    async fn settle(&self, departure: &Departure) -> Result<(), PresenceError> {
        let member = departure.entry();
        let shard = self.keys.shard_of(&place(&departure.nsp, &departure.room));
        let _: u8 = SETTLE
            .evalsha_with_reload(
                &self.client,
                self.claim_keys(shard),
                vec![member, departure.id.clone()],
            )
            .await?;
        Ok(())
    }

    /// Reaps every shard: each keeps its own heartbeats, so each script stays in its shard's
    /// slot. This node was forgotten when any shard forgot it.
    async fn reap(&self, node_timeout: Duration, grace: Duration) -> Result<Reap, PresenceError> {
        let timeout = node_timeout.as_millis().to_string();
        let mut reaped = Reap {
            taken_over: Vec::new(),
            forgotten: false,
        };
        for shard in self.keys.shards() {
            let mut reply = REAP
                .evalsha_with_reload::<Vec<String>, _, _>(
                    &self.client,
                    vec![self.keys.nodes(shard)],
                    vec![self.node.clone(), timeout.clone()],
                )
                .await?
                .into_iter();
            reaped.forgotten |= reply.next().as_deref() == Some("forgotten");
            for node in reply {
                if self.take_over(shard, &node, &timeout, grace).await?
                    && !reaped.taken_over.contains(&node)
                {
                    reaped.taken_over.push(node);
                }
            }
        }
        Ok(reaped)
    }

    async fn retire(&self, grace: Duration) -> Result<(), PresenceError> {
        for shard in self.keys.shards() {
            self.take_over(shard, &self.node, "", grace).await?;
        }
        Ok(())
    }
}

impl RedisPresence {
    /// Claims the due departures of one shard, as [`PresenceStore::claim_due`].
    async fn claim_due_in(
        &self,
        shard: PresenceShard,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Departure>, PresenceError> {
        // The earliest claims and timers are the candidates; the script checks each again.
        let last = i64::try_from(limit).unwrap_or(i64::MAX).saturating_sub(1);
        let (claims, timers) = (self.keys.claims(shard), self.keys.timers(shard));
        let stale: Vec<String> = self
            .client
            .zrange(&claims, 0, last, None, false, None, false)
            .await?;
        let due: Vec<String> = self
            .client
            .zrange(&timers, 0, last, None, false, None, false)
            .await?;
        if stale.is_empty() && due.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = vec![timers];
        keys.extend(self.claim_keys(shard));
        for member in &due {
            let place = member.rsplit_once('\n').map_or("", |(place, _)| place);
            keys.extend([self.keys.users(place), self.keys.counts(place)]);
        }
        let mut args = vec![lease.as_millis().to_string(), stale.len().to_string()];
        args.extend(stale);
        args.extend(due);
        let claimed: Vec<(String, String, String)> =
            CLAIM.evalsha_with_reload(&self.client, keys, args).await?;
        Ok(claimed
            .into_iter()
            .filter_map(|(entry, id, name)| departure(&entry, id, name))
            .collect())
    }

    /// Turns the sockets of `node` in `shard` into leave timers of `grace`, if it is still silent
    /// there for `timeout` ms (`""`: it is this node, retiring). True when it was taken over.
    async fn take_over(
        &self,
        shard: PresenceShard,
        node: &str,
        timeout: &str,
        grace: Duration,
    ) -> Result<bool, PresenceError> {
        let set = self.keys.node(shard, node);
        let entries: Vec<String> = self.client.smembers(&set).await?;
        let mut keys = vec![self.keys.nodes(shard), self.keys.timers(shard), set];
        for entry in &entries {
            let place = entry.rsplit_once('\n').map_or("", |(place, _)| place);
            keys.extend([self.keys.sockets(place), self.keys.counts(place)]);
        }
        let mut args = vec![
            node.to_string(),
            timeout.to_string(),
            grace.as_millis().to_string(),
        ];
        args.extend(entries);
        let taken: u8 = TAKE_OVER
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
        Ok(taken == 1)
    }
}
