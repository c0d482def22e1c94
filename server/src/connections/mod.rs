//! What a node lets in, and for how long it waits: the HTTP server with its header deadline
//! ([`serve`]), the admission of Socket.IO sessions up to `MAX_CONNECTIONS` ([`admission`]), and
//! the deadline of request bodies ([`deadline`]), and the bytes they carried ([`counted`]). Each phase of a connection has a bound; what
//! each bound cut off is counted in `http_timeouts{phase}`.

pub mod admission;
pub mod counted;
pub mod deadline;
pub mod gate;
pub mod serve;
pub mod sizing;

pub use crate::metrics::Phase;
pub use admission::{Admission, Limits, Permit, Refusal};
