//! What a node lets in, and for how long it waits: the HTTP server with its header deadline
//! ([`serve`]), the admission of Socket.IO sessions up to `MAX_CONNECTIONS` ([`admission`]), and
//! the deadline of request bodies ([`deadline`]). Each phase of a connection has a bound; what
//! each bound cut off is counted in `http_timeouts{phase}`.

pub mod admission;
pub mod deadline;
pub mod gate;
pub mod serve;
pub mod sizing;

pub use admission::{Admission, Limits, Permit, Refusal};

/// A phase of a connection that a slow or silent client can stretch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The request line and headers (`HTTP_HEADER_TIMEOUT_MS`), idle keep-alive included.
    Headers,
    /// A request body, e.g. a long-polling POST (`HTTP_BODY_TIMEOUT_MS`).
    Body,
    /// A session that ended without connecting to any namespace (`CONNECT_TIMEOUT_MS`, or the
    /// client gave up).
    Connect,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Headers => "headers",
            Phase::Body => "body",
            Phase::Connect => "connect",
        }
    }
}
