//! The HTTP server: one task per TCP connection, each with a deadline for its request headers.
//!
//! axum's `serve` gives hyper no timer, so a client that trickles its request headers one byte at
//! a time (slowloris) holds its connection and a file descriptor for ever. Here every request's
//! headers, the first and each keep-alive one, must arrive within `HTTP_HEADER_TIMEOUT_MS`; an
//! idle keep-alive connection is closed after the same time. Upgraded WebSockets leave hyper and
//! are bounded by Engine.IO's heartbeat instead.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceExt;

use super::{Phase, counted::Counted};
use crate::metrics::Metrics;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open connections to
/// finish (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    // Tells the connections to finish their current request and close…
    let (stopping, stop_rx) = watch::channel(());
    // …and is closed once the last of them did.
    let (all_closed, open) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, mostly: back off instead of spinning.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small broadcasts must leave at once, not wait for the client's delayed ACK (Nagle's
        // algorithm adds up to 40 ms); Node.js servers turn it off too.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let tcp = Counted::new(tcp, metrics.bytes_in.clone(), metrics.bytes_out.clone());
        let conn = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let (metrics, mut stop_rx, open) = (metrics.clone(), stop_rx.clone(), open.clone());
        tokio::spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            drop(open);
            if let Err(err) = ended {
                if err.is_timeout() {
                    metrics.count_timeout(Phase::Headers);
                    tracing::debug!(%peer, "closed a connection that sent no complete request headers in time");
                } else {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    drop(open);
    let _ = stopping.send(());
    all_closed.closed().await;
}
