//! A request body that must arrive within a deadline: a long-polling client that announces a
//! body and then trickles it would otherwise hold its request, its buffer and its connection for
//! as long as it likes.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::Phase;
use crate::metrics::Metrics;

pin_project_lite::pin_project! {
    /// `inner`, failing once `deadline` passes before its end.
    pub struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        deadline: Sleep,
        metrics: Arc<Metrics>,
        expired: bool,
    }
}

/// The body timed out.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl DeadlineBody {
    pub fn new(inner: Body, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep(timeout),
            metrics,
            expired: false,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        ready!(this.deadline.poll(cx));
        *this.expired = true;
        this.metrics.count_timeout(Phase::Body);
        tracing::debug!("closed a request whose body did not arrive in time");
        Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
