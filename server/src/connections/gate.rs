//! The door of the Socket.IO endpoint: a request that opens a session (no `sid`) is admitted or
//! refused cheaply, before Engine.IO allocates anything or a WebSocket is upgraded; a request
//! body gets its deadline. Requests of sessions already admitted always pass, so a full node
//! never cuts its own clients off.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{Admission, Refusal, deadline::DeadlineBody};
use crate::metrics::Metrics;

/// How often a node under a refusal storm writes a log line about it.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the gate needs, shared by every request.
pub struct Gate {
    pub admission: Arc<Admission>,
    pub metrics: Arc<Metrics>,
    pub body_timeout: Duration,
    /// Peers whose `X-Forwarded-For` names the client (the load balancers in front).
    pub trusted_proxies: Vec<IpAddr>,
    /// Seconds a refused client is told to wait (`Retry-After`).
    pub retry_after_secs: u64,
    refusals_logged: AtomicU64,
    started: Instant,
}

impl Gate {
    pub fn new(
        admission: Arc<Admission>,
        metrics: Arc<Metrics>,
        body_timeout: Duration,
        trusted_proxies: Vec<IpAddr>,
    ) -> Arc<Self> {
        Arc::new(Self {
            admission,
            metrics,
            body_timeout,
            trusted_proxies,
            retry_after_secs: 5,
            refusals_logged: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Passes `req` on, admitted and with its body under a deadline, or says why it is refused
    /// (logged).
    pub fn check(&self, mut req: Request) -> Result<Request, Refusal> {
        if opens_session(&req) {
            let ip = self.client_ip(&req);
            match self.admission.admit(ip) {
                Ok(permit) => {
                    req.extensions_mut().insert(Arc::new(permit));
                }
                Err(refusal) => {
                    self.log_refusal(refusal, ip);
                    return Err(refusal);
                }
            }
        }
        if req.method() == Method::POST {
            let timeout = self.body_timeout;
            let metrics = self.metrics.clone();
            req = req.map(|body| Body::new(DeadlineBody::new(body, timeout, metrics)));
        }
        Ok(req)
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last
    /// address of `X-Forwarded-For` that is not one (what the nearest untrusted hop said).
    pub fn client_ip(&self, req: &Request) -> IpAddr {
        self.address_of(req.extensions(), req.headers())
    }

    /// [`Self::client_ip`] of a request's extensions and headers, e.g. a socket's `req_parts`.
    pub fn address_of(&self, extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .rev()
            .find(|ip| !self.trusted_proxies.contains(ip))
            .unwrap_or(peer)
    }

    /// The answer to a refused request: 503, and when to come back.
    pub fn refusal(&self, refusal: Refusal) -> Response {
        let message = match refusal {
            Refusal::Full => "this node is full: try again later or another node",
            Refusal::PerIp => "too many connections from your address",
        };
        let mut res = (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        res.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        res
    }

    /// One line per interval, however many are refused.
    fn log_refusal(&self, refusal: Refusal, ip: IpAddr) {
        let now = self.started.elapsed().as_secs();
        let last = self.refusals_logged.load(Relaxed);
        let due = last == 0 || now >= last + REFUSAL_LOG_INTERVAL.as_secs();
        if due
            && self
                .refusals_logged
                .compare_exchange(last, now.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            let a = &self.admission;
            tracing::warn!(
                reason = refusal.as_str(),
                %ip,
                open = a.open(),
                max = a.limits().max,
                refused_full = a.refused(Refusal::Full),
                refused_per_ip = a.refused(Refusal::PerIp),
                "refusing new connections (logged once per {}s)",
                REFUSAL_LOG_INTERVAL.as_secs()
            );
        }
    }
}

/// An Engine.IO handshake: a GET without a session id (polling's first request, or a WebSocket
/// opened directly). An upgrade of an existing session carries its `sid`.
fn opens_session(req: &Request) -> bool {
    req.method() == Method::GET
        && !req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair.starts_with("sid="))
}

/// The middleware: `axum::middleware::from_fn_with_state(gate, gate::admit)`.
pub async fn admit(
    axum::extract::State(gate): axum::extract::State<Arc<Gate>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match gate.check(req) {
        Ok(req) => next.run(req).await,
        Err(refusal) => gate.refusal(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::Limits;

    fn gate(max: usize, proxies: Vec<IpAddr>) -> Arc<Gate> {
        let limits = Limits {
            max,
            per_ip: None,
            high_water: max,
            low_water: max,
        };
        let admission = Admission::new(limits, Arc::default());
        Gate::new(admission, Arc::default(), Duration::from_secs(1), proxies)
    }

    fn request(method: Method, uri: &str, peer: &str, forwarded: Option<&str>) -> Request {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(f) = forwarded {
            req = req.header("x-forwarded-for", f);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req
    }

    #[tokio::test]
    async fn only_handshakes_are_counted_and_refused() {
        let gate = gate(1, vec![]);
        let hs = "/socket.io/?EIO=4&transport=polling";
        let admitted = gate
            .check(request(Method::GET, hs, "1.2.3.4:5", None))
            .unwrap();
        assert!(
            admitted
                .extensions()
                .get::<Arc<super::super::Permit>>()
                .is_some()
        );
        let refusal = gate
            .check(request(Method::GET, hs, "1.2.3.4:6", None))
            .unwrap_err();
        assert_eq!(refusal, Refusal::Full);
        let refused = gate.refusal(refusal);
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
        // The admitted session's own requests pass, full or not.
        for (method, uri) in [
            (Method::GET, "/socket.io/?EIO=4&transport=polling&sid=abc"),
            (Method::POST, "/socket.io/?EIO=4&transport=polling&sid=abc"),
            (Method::GET, "/socket.io/?EIO=4&transport=websocket&sid=abc"),
            (Method::OPTIONS, hs),
        ] {
            assert!(gate.check(request(method, uri, "1.2.3.4:5", None)).is_ok());
        }
        drop(admitted);
        assert!(
            gate.check(request(Method::GET, hs, "1.2.3.4:6", None))
                .is_ok()
        );
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let gate = gate(10, vec!["10.0.0.1".parse().unwrap()]);
        let ip = |peer, fwd| gate.client_ip(&request(Method::GET, "/", peer, fwd));
        assert_eq!(
            ip("9.9.9.9:1", Some("1.1.1.1")),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            ip("10.0.0.1:1", Some("6.6.6.6, 1.1.1.1")),
            "1.1.1.1".parse::<IpAddr>().unwrap(),
            "the client could have written 6.6.6.6 itself"
        );
        assert_eq!(
            ip("10.0.0.1:1", Some("1.1.1.1, 10.0.0.1")),
            "1.1.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            ip("10.0.0.1:1", None),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
