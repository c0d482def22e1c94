//! [`Driver`] over Redis with `fred`: one client publishes and queries, one subscribes.

use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use fred::{
    clients::{Client, SubscriberClient},
    interfaces::{ClientLike, EventInterface, PubsubInterface, TransactionInterface},
    rustls::{
        ClientConfig, RootCertStore,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    types::{
        Builder,
        config::{Config, ReconnectPolicy},
    },
};
use futures_util::stream;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Driver, Incoming, IncomingStream};
use crate::error::DriverError;

/// Connection settings of [`RedisDriver`].
#[derive(Debug, Clone)]
pub struct RedisDriverConfig {
    /// `redis://[[user:]password@]host:port[/db]`, `rediss://…` for TLS (see
    /// [`RedisDriverConfig::tls`]), `redis-cluster://host:port?node=host2:port2&…` for a Redis
    /// Cluster, or `redis-sentinel://host:port/db?sentinelServiceName=name` behind Sentinel:
    /// the forms of fred's `Config::from_url`.
    pub url: String,
    /// Certificates of a `rediss://` connection; without a CA file the system's roots are trusted.
    pub tls: RedisTls,
    /// How many received messages may wait to be read before the oldest are lost (and counted).
    /// fred allocates this capacity up front for each of the subscriber's event channels: about
    /// 1 MiB per 1024 messages, whatever the traffic.
    pub receive_buffer: usize,
    /// Delay between reconnection attempts; they go on forever, from the first connection on
    /// (a node started before its Redis waits for it).
    pub reconnect_delay: Duration,
    /// How long any command may take, a wait for a reconnection included, before it fails: a
    /// frozen or unreachable Redis fails requests instead of holding them.
    pub command_timeout: Duration,
    /// Sharded pub/sub (see [`Driver::sharded`]); [`RedisDriverConfig::new`] sets it for a
    /// Redis Cluster URL ([`RedisDriverConfig::is_cluster_url`]). It needs Redis 7.0 or later,
    /// standalone or Cluster.
    pub sharded: bool,
}

impl RedisDriverConfig {
    /// Whether `url` names a Redis Cluster (`redis-cluster://`, `rediss-cluster://`, …), as
    /// fred reads it.
    pub fn is_cluster_url(url: &str) -> bool {
        url.split_once("://")
            .is_some_and(|(scheme, _)| scheme.ends_with("-cluster"))
    }

    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            sharded: Self::is_cluster_url(&url),
            url,
            tls: RedisTls::default(),
            receive_buffer: 1 << 13,
            reconnect_delay: Duration::from_millis(100),
            command_timeout: Duration::from_secs(5),
        }
    }
}

/// The certificates of a TLS connection to Redis, as PEM files.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// The CA that signed the server's certificate (a private CA, say); unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate, for servers that authenticate clients (`tls-auth-clients yes`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

impl RedisTls {
    fn is_default(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// A rustls client configuration trusting `ca_file` (or the system's roots, or Mozilla's
    /// where the system has none) and presenting `cert_file` when given.
    fn client_config(&self) -> Result<ClientConfig, DriverError> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                for cert in CertificateDer::pem_file_iter(ca).map_err(DriverError::new)? {
                    roots
                        .add(cert.map_err(DriverError::new)?)
                        .map_err(DriverError::new)?;
                }
            }
            None => roots = system_roots(fred::rustls_native_certs::load_native_certs().certs),
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(DriverError::new)?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(DriverError::new)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(DriverError::new)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(DriverError::new)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(DriverError::new)
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(DriverError::new(std::io::Error::other(
                "a client certificate needs both its certificate and its key file",
            ))),
        }
    }
}

/// The system's trusted roots, or Mozilla's (built in) where it has none: a slim container image
/// has no CA bundle, and must still reach a managed Redis with a public certificate.
fn system_roots(native: Vec<CertificateDer<'static>>) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(native);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// Redis pub/sub transport. Reconnects forever and restores subscriptions after a reconnect.
#[derive(Clone)]
pub struct RedisDriver {
    publisher: Client,
    subscriber: SubscriberClient,
    sharded: bool,
    /// The task restoring subscriptions after each reconnection.
    resubscriber: tokio::task::AbortHandle,
    /// Told each time the subscriptions are restored after a reconnection: only from then on
    /// does the node hear the cluster again, so only then may its clients resync.
    restored: broadcast::Sender<()>,
}

impl RedisDriver {
    /// Connects both clients and waits until they are ready.
    pub async fn connect(config: RedisDriverConfig) -> Result<Self, DriverError> {
        let mut redis = Config::from_url(&config.url).map_err(DriverError::new)?;
        if !config.tls.is_default() && redis.tls.is_none() {
            return Err(DriverError::new(std::io::Error::other(
                "TLS certificates are set, but the URL is not rediss://",
            )));
        }
        if redis.tls.is_some() {
            redis.tls = Some(config.tls.client_config()?.into());
        }
        let mut builder = Builder::from_config(redis);
        let delay_ms = u32::try_from(config.reconnect_delay.as_millis()).unwrap_or(u32::MAX);
        builder
            .set_policy(ReconnectPolicy::new_constant(0, delay_ms))
            .with_config(|redis| redis.fail_fast = false)
            .with_connection_config(|conn| {
                conn.connection_timeout = Duration::from_secs(5);
                conn.internal_command_timeout = config.command_timeout;
            })
            .with_performance_config(|perf| perf.default_command_timeout = config.command_timeout);
        // Only the subscriber receives messages: the publisher keeps fred's small default.
        let publisher = builder.build().map_err(DriverError::new)?;
        let subscriber = builder
            .with_performance_config(|perf| perf.broadcast_channel_capacity = config.receive_buffer)
            .build_subscriber_client()
            .map_err(DriverError::new)?;
        publisher.init().await.map_err(DriverError::new)?;
        subscriber.init().await.map_err(DriverError::new)?;
        let (restored, _) = broadcast::channel(16);
        let resubscriber = tokio::spawn(resubscribe_after_reconnects(
            subscriber.clone(),
            restored.clone(),
        ));
        Ok(Self {
            publisher,
            subscriber,
            sharded: config.sharded,
            resubscriber: resubscriber.abort_handle(),
            restored,
        })
    }

    /// The publishing client, for the application's own commands on the same connection.
    pub fn client(&self) -> &Client {
        &self.publisher
    }

    /// Whether both connections are up.
    pub fn is_connected(&self) -> bool {
        self.publisher.is_connected() && self.subscriber.is_connected()
    }

    /// Whether both connections are up and Redis answers a `PING` on each within `deadline`: a
    /// connected but frozen Redis is not ready.
    pub async fn answers_within(&self, deadline: Duration) -> bool {
        let pings = async {
            let publisher: Result<(), _> = self.publisher.ping(None).await;
            let subscriber: Result<(), _> = self.subscriber.ping(None).await;
            publisher.is_ok() && subscriber.is_ok()
        };
        self.is_connected() && tokio::time::timeout(deadline, pings).await == Ok(true)
    }

    /// Closes both connections.
    pub async fn quit(&self) {
        self.resubscriber.abort();
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }
}

impl Driver for RedisDriver {
    fn sharded(&self) -> bool {
        self.sharded
    }

    async fn publish(&self, channel: String, payload: Vec<u8>) -> Result<(), DriverError> {
        let payload = Bytes::from(payload);
        let published = if self.sharded {
            self.publisher.spublish::<(), _, _>(channel, payload).await
        } else {
            self.publisher.publish::<(), _, _>(channel, payload).await
        };
        published.map_err(DriverError::new)
    }

    /// Sharded channels are subscribed one command each: a Redis Cluster takes one only for
    /// channels of one slot, on the shard that owns it.
    async fn subscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), DriverError> {
        if self.sharded {
            let each = channels.into_iter().map(|c| self.subscriber.ssubscribe(c));
            futures_util::future::try_join_all(each)
                .await
                .map_err(DriverError::new)?;
            return no_patterns(&patterns);
        }
        if !channels.is_empty() {
            self.subscriber
                .subscribe(channels)
                .await
                .map_err(DriverError::new)?;
        }
        if !patterns.is_empty() {
            self.subscriber
                .psubscribe(patterns)
                .await
                .map_err(DriverError::new)?;
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), DriverError> {
        if self.sharded {
            let each = channels
                .into_iter()
                .map(|c| self.subscriber.sunsubscribe(c));
            futures_util::future::try_join_all(each)
                .await
                .map_err(DriverError::new)?;
            return no_patterns(&patterns);
        }
        if !channels.is_empty() {
            self.subscriber
                .unsubscribe(channels)
                .await
                .map_err(DriverError::new)?;
        }
        if !patterns.is_empty() {
            self.subscriber
                .punsubscribe(patterns)
                .await
                .map_err(DriverError::new)?;
        }
        Ok(())
    }

    async fn num_sub(&self, channels: Vec<String>) -> Result<Vec<u64>, DriverError> {
        if self.sharded {
            let each = channels.into_iter().map(|c| async move {
                let reply: Vec<fred::types::Value> = self
                    .publisher
                    .pubsub_shardnumsub(c)
                    .await
                    .map_err(DriverError::new)?;
                Ok::<_, DriverError>(numsub_counts(&reply, 1)?[0])
            });
            return futures_util::future::try_join_all(each).await;
        }
        let n = channels.len();
        let reply: Vec<fred::types::Value> = self
            .publisher
            .pubsub_numsub(channels)
            .await
            .map_err(DriverError::new)?;
        numsub_counts(&reply, n)
    }

    /// One transaction (`MULTI` … `EXEC`): Redis runs both commands at once, so no other client
    /// subscribes or unsubscribes between the count and the publish. (A pipeline is not enough:
    /// Redis may run another client's command between two of them when they arrive in two reads,
    /// as a test watching `MONITOR` saw.) When sharded, the transaction holds the count of
    /// `probe[0]`, the channel's own, on the shard of its slot; the other channels are counted
    /// just before.
    async fn num_sub_then_publish(
        &self,
        mut probe: Vec<String>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u64>, DriverError> {
        let (mut counts, probe) = if self.sharded && probe.len() > 1 {
            let rest = probe.split_off(1);
            (self.num_sub(rest).await?, probe)
        } else {
            (Vec::new(), probe)
        };
        let n = probe.len();
        let transaction = self.publisher.multi();
        let payload = Bytes::from(payload);
        if self.sharded {
            let () = transaction
                .pubsub_shardnumsub(probe)
                .await
                .map_err(DriverError::new)?;
            let () = transaction
                .spublish(channel, payload)
                .await
                .map_err(DriverError::new)?;
        } else {
            let () = transaction
                .pubsub_numsub(probe)
                .await
                .map_err(DriverError::new)?;
            let () = transaction
                .publish(channel, payload)
                .await
                .map_err(DriverError::new)?;
        }
        let (reply, _receivers): (Vec<fred::types::Value>, u64) =
            transaction.exec(true).await.map_err(DriverError::new)?;
        let mut own = numsub_counts(&reply, n)?;
        own.append(&mut counts);
        Ok(own)
    }

    fn incoming(&self) -> IncomingStream {
        let state = (self.subscriber.message_rx(), self.restored.subscribe());
        Box::pin(stream::unfold(
            state,
            |(mut messages, mut restorations)| async move {
                let item = tokio::select! {
                    msg = messages.recv() => match msg {
                        Ok(msg) => Incoming::Message {
                            channel: msg.channel.to_string(),
                            payload: payload_of(msg.value),
                        },
                        Err(RecvError::Lagged(n)) => Incoming::Lost(n),
                        Err(RecvError::Closed) => return None,
                    },
                    restored = restorations.recv() => match restored {
                        Ok(_) | Err(RecvError::Lagged(_)) => Incoming::Reconnected,
                        Err(RecvError::Closed) => return None,
                    },
                };
                Some((item, (messages, restorations)))
            },
        ))
    }
}

/// Restores the subscriber's subscriptions after each reconnection (fred tracks them), retrying
/// each second until it succeeds, then tells `restored`. Not fred's `manage_subscriptions`: it
/// gives up at its first failed step, and with only sharded channels its first step, a
/// `SUBSCRIBE` of no channel, fails: their subscriptions were never restored.
async fn resubscribe_after_reconnects(
    subscriber: SubscriberClient,
    restored: broadcast::Sender<()>,
) {
    let mut reconnects = subscriber.reconnect_rx();
    loop {
        match reconnects.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        while let Err(err) = resubscribe(&subscriber).await {
            tracing::error!(%err, "could not restore subscriptions after a reconnection; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let _ = restored.send(());
    }
}

/// Subscribes again to every tracked channel and pattern; each sharded channel on its own, on the
/// shard of its slot.
async fn resubscribe(subscriber: &SubscriberClient) -> Result<(), fred::error::Error> {
    let channels: Vec<_> = subscriber.tracked_channels().into_iter().collect();
    let patterns: Vec<_> = subscriber.tracked_patterns().into_iter().collect();
    if !channels.is_empty() {
        subscriber.subscribe(channels).await?;
    }
    if !patterns.is_empty() {
        subscriber.psubscribe(patterns).await?;
    }
    let shards = subscriber.tracked_shard_channels().into_iter();
    futures_util::future::try_join_all(shards.map(|c| subscriber.ssubscribe(c))).await?;
    Ok(())
}

/// Sharded pub/sub has no patterns: asking for one is a bug of the caller.
fn no_patterns(patterns: &[String]) -> Result<(), DriverError> {
    match patterns {
        [] => Ok(()),
        _ => Err(DriverError(
            "sharded pub/sub has no pattern subscriptions".into(),
        )),
    }
}

/// The counts of a `PUBSUB NUMSUB` reply, `[channel, count, channel, count, …]`, for `n` channels.
fn numsub_counts(reply: &[fred::types::Value], n: usize) -> Result<Vec<u64>, DriverError> {
    let counts: Vec<u64> = reply
        .chunks(2)
        .map(|pair| pair.get(1).and_then(|v| v.as_u64()).unwrap_or(0))
        .collect();
    if counts.len() == n {
        Ok(counts)
    } else {
        Err(DriverError(
            format!("NUMSUB answered {} counts for {n} channels", counts.len()).into(),
        ))
    }
}

/// A message's payload, without copying it.
fn payload_of(value: fred::types::Value) -> Bytes {
    match value {
        fred::types::Value::Bytes(bytes) => bytes,
        fred::types::Value::String(text) => text.into_inner(),
        _ => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_system_bundle_mozillas_roots_are_trusted() {
        assert_eq!(
            system_roots(Vec::new()).len(),
            webpki_roots::TLS_SERVER_ROOTS.len()
        );
    }
}
