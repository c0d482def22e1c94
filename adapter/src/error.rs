//! Errors at the crate's boundary.

use socketioxide_core::adapter::errors::{AdapterError, BroadcastError};

/// A failure of the Redis (or in-memory) transport.
#[derive(Debug, thiserror::Error)]
#[error("driver error: {0}")]
pub struct DriverError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

impl DriverError {
    pub(crate) fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(err))
    }
}

/// A message between nodes that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode MessagePack message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("cannot decode JSON message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot convert packet data: {0}")]
    Data(String),
}

/// Socket data that could not be stored with its socket.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("socket data is not representable as JSON: {0}")]
    Data(#[from] serde_json::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Errors of cluster operations.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Some nodes did not answer before the request timeout. `nodes` names the nodes of this crate
    /// that were alive but silent; `foreign` counts silent nodes without heartbeats (Node.js).
    #[error("{request} timed out: no answer from nodes {nodes:?} and {foreign} other node(s)")]
    Timeout {
        request: &'static str,
        nodes: Vec<String>,
        foreign: usize,
    },
    /// `pending` broadcasts of this node wait for the pub/sub server; it takes no more until
    /// some are sent (`ClusterConfig::max_pending_broadcasts`).
    #[error("overloaded: {pending} broadcasts are already waiting for the pub/sub server")]
    Overloaded { pending: usize },
    #[error("namespace {0} is not served by this node")]
    UnknownNamespace(String),
    /// A [`crate::RemoteSocket`] made otherwise than by [`crate::Cluster::fetch_sockets`] has no
    /// cluster to act through.
    #[error("socket {0} was not fetched from the cluster")]
    Unbound(String),
    /// This node already serves `ClusterConfig::max_namespaces` namespaces.
    #[error("this node serves its maximum of {max} namespaces")]
    TooManyNamespaces { max: usize },
    /// A concurrent first connect built the namespace twice; the first one stays (see
    /// `ClusterStats::namespace_races`).
    #[error("namespace {0} is being created by another connect")]
    NamespaceRace(String),
    #[error("the cluster is not started: no namespace has been created on this node yet")]
    NotStarted,
}

impl ClusterError {
    /// The cluster error behind a failed socketioxide emit, if this crate's adapter caused it:
    /// `emit` hides it in a boxed `AdapterError`.
    pub fn cause_of(err: &BroadcastError) -> Option<&ClusterError> {
        match err {
            BroadcastError::Adapter(AdapterError(inner)) => inner.downcast_ref(),
            _ => None,
        }
    }
}

impl From<ClusterError> for AdapterError {
    fn from(err: ClusterError) -> Self {
        AdapterError(Box::new(err))
    }
}
