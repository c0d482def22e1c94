//! Per-connection memory: a WebSocket keeps its upgrade request's URI and headers for its whole
//! life (engineioxide stores them as the socket's `req_parts`, axum adds `OriginalUri`). Both point
//! into hyper's read buffer, so every idle connection pins that 16 KiB buffer. Copying them out
//! before the Socket.IO layer frees it: about 7 KiB less resident memory per connection, for a
//! copy of the headers once per HTTP request.

use axum::{
    body::Bytes,
    extract::{OriginalUri, Request},
    http::{HeaderMap, HeaderName, HeaderValue, Uri},
};

/// Copies the request's URI and headers into their own allocations. Use it as the outermost
/// layer, around the Socket.IO layer:
/// `router.layer(sio_layer).layer(axum::middleware::map_request(compact_request_parts))`.
pub async fn compact_request_parts(req: Request) -> Request {
    let (mut parts, body) = req.into_parts();
    parts.headers = copied_headers(&parts.headers);
    // Outside a nested router the original URI is the URI: one copy then serves both.
    let original_is_uri = parts
        .extensions
        .get::<OriginalUri>()
        .is_some_and(|OriginalUri(original)| *original == parts.uri);
    if let Some(uri) = copied(&parts.uri) {
        parts.uri = uri;
    }
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
        let uri = if original_is_uri {
            Some(parts.uri.clone())
        } else {
            copied(original)
        };
        if let Some(uri) = uri {
            *original = uri;
        }
    }
    Request::from_parts(parts, body)
}

/// The headers, their values copied into one buffer that they share: a value copied on its own
/// costs an allocation, and one more (a shared count) when engineioxide clones the request.
fn copied_headers(original: &HeaderMap) -> HeaderMap {
    let mut buffer = Vec::with_capacity(original.values().map(HeaderValue::len).sum());
    for value in original.values() {
        buffer.extend_from_slice(value.as_bytes());
    }
    let buffer = Bytes::from(buffer);
    let mut headers = HeaderMap::with_capacity(original.len());
    let mut start = 0;
    for (name, value) in original {
        let end = start + value.len();
        let value = HeaderValue::from_maybe_shared(buffer.slice(start..end));
        start = end;
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_str().as_bytes()), value) {
            headers.append(name, value);
        }
    }
    headers
}

fn copied(uri: &Uri) -> Option<Uri> {
    Uri::try_from(uri.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_uri_headers_and_original_uri() {
        let mut req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header("x-custom", "a")
            .header("x-custom", "b")
            .header("host", "example.test")
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(OriginalUri(Uri::from_static("/base/socket.io/")));
        let req = compact_request_parts(req).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        let custom: Vec<_> = req.headers().get_all("x-custom").iter().collect();
        assert_eq!(custom, ["a", "b"]);
        assert_eq!(req.headers()["host"], "example.test");
        let OriginalUri(original) = req.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original, "/base/socket.io/");
    }

    #[tokio::test]
    async fn header_values_share_one_buffer() {
        let req = Request::builder()
            .header("a", "1")
            .header("b", "22")
            .body(axum::body::Body::empty())
            .unwrap();
        let req = compact_request_parts(req).await;
        let values: Vec<&[u8]> = req.headers().values().map(HeaderValue::as_bytes).collect();
        assert_eq!(values, [b"1".as_slice(), b"22"]);
        assert_eq!(values[0].as_ptr().wrapping_add(1), values[1].as_ptr());
    }

    #[tokio::test]
    async fn an_original_uri_equal_to_the_uri_shares_its_copy() {
        let uri = "/socket.io/?EIO=4&transport=websocket";
        let mut req = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(OriginalUri(Uri::from_static(uri)));
        let req = compact_request_parts(req).await;
        let OriginalUri(original) = req.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original, uri);
        let text = |uri: &Uri| uri.path_and_query().unwrap().as_str().as_ptr();
        assert_eq!(text(original), text(req.uri()));
    }
}
