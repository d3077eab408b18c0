//! The reverse proxy in front of a Space's app: one HTTP/1 connection to the app per
//! request, bodies streamed both ways without buffering (Server-Sent Events flow as they
//! are written), protocol upgrades (WebSocket) spliced through once both sides switch.
//! Hop-by-hop headers are dropped, and the hub's credentials (`Authorization`, the session
//! cookie) never reach the app.

use crate::auth::password::{FORM_COOKIE, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::spaces::subdomain::ACCESS_COOKIE;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The prefix of every cookie the hub sets (its session, its sign-in forms' nonce, a Space
/// origin's access pass): an app may set none of them.
const HUB_COOKIE_PREFIX: &str = "trove_";

/// Removes the app's `Set-Cookie` headers that would set one of the hub's cookies: the app
/// is served from the hub's origin (or, with subdomains, may name a parent domain), so it
/// could otherwise plant a session of its author's choosing in its visitor's browser
/// (login CSRF) or sign them out. A nameless cookie (`=trove_session=…`) is sent back as
/// `trove_session=…` by browsers, so what follows a leading `=` is judged too.
fn strip_hub_cookies(headers: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !sets_hub_cookie(v.as_bytes()))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

/// Whether a `Set-Cookie` value names a cookie of the hub's (case aside).
fn sets_hub_cookie(value: &[u8]) -> bool {
    let pair = value.split(|b| *b == b';').next().unwrap_or_default();
    let name = pair
        .trim_ascii()
        .strip_prefix(b"=")
        .unwrap_or(pair.trim_ascii())
        .trim_ascii();
    name.len() >= HUB_COOKIE_PREFIX.len()
        && name[..HUB_COOKIE_PREFIX.len()].eq_ignore_ascii_case(HUB_COOKIE_PREFIX.as_bytes())
}

/// The `Cookie` header without the hub's own cookies (the session, the nonce of its
/// sign-in forms) and a Space origin's access pass; `None` when nothing is left.
fn cookies_for_app(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter(|c| {
            let name = c.split('=').next().map(str::trim);
            name != Some(SESSION_COOKIE) && name != Some(FORM_COOKIE) && name != Some(ACCESS_COOKIE)
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        HeaderValue::from_str(&kept.join("; ")).ok()
    }
}

/// The headers the app gets: the client's, minus hop-by-hop and the hub's credentials,
/// plus `X-Forwarded-*`.
pub fn request_headers(original: &HeaderMap, peer: Option<SocketAddr>, proto: &str) -> HeaderMap {
    let upgrade = original.get(header::UPGRADE).cloned().filter(|_| {
        original
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
    });
    let mut headers = original.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::COOKIE);
    if let Some(cookies) = cookies_for_app(original) {
        headers.insert(header::COOKIE, cookies);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
    if let Some(peer) = peer
        && let Ok(v) = HeaderValue::from_str(&peer.ip().to_string())
    {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if let Some(host) = original.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Ok(v) = HeaderValue::from_str(proto) {
        headers.insert(HeaderName::from_static("x-forwarded-proto"), v);
    }
    headers
}

/// Sends `request` to the app on `port` at `path_and_query` and streams its answer back.
/// A streamed answer or a spliced upgrade ends when `ends` is cancelled (the Space's
/// audience changed: whoever may still see it reconnects and is authorized again).
pub async fn forward(
    mut request: Request,
    port: u16,
    path_and_query: &str,
    peer: Option<SocketAddr>,
    proto: &str,
    ends: CancellationToken,
) -> ApiResult<Response> {
    let client_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>();
    let (parts, body) = request.into_parts();
    let headers = request_headers(&parts.headers, peer, proto);
    let wants_upgrade = headers.contains_key(header::UPGRADE);
    let uri: Uri = path_and_query
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid path"))?;
    let mut upstream = axum::http::Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("proxy request: {e}")))?;
    *upstream.headers_mut() = headers;

    let unreachable = |e: &dyn std::fmt::Display| {
        tracing::info!(port, error = %e, "space app unreachable");
        ApiError::Unavailable("The Space's app is not answering; retry in a moment".into())
    };
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "space app connection ended");
        }
    });
    let mut response = sender
        .send_request(upstream)
        .await
        .map_err(|e| unreachable(&e))?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), true) = (client_upgrade, wants_upgrade) else {
            return Err(ApiError::Unavailable(
                "The Space's app switched protocols unasked".into(),
            ));
        };
        let app_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, app_upgrade) {
                Ok((client, app)) => {
                    let mut client = TokioIo::new(client);
                    let mut app = TokioIo::new(app);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut app) => {}
                        _ = ends.cancelled() => {}
                    }
                }
                Err(e) => tracing::debug!(error = %e, "space upgrade failed"),
            }
        });
        let (mut parts, _) = response.into_parts();
        let upgrade = parts.headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(&mut parts.headers);
        strip_hub_cookies(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(upgrade) = upgrade {
            parts.headers.insert(header::UPGRADE, upgrade);
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, incoming) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_hub_cookies(&mut parts.headers);
    // Server-Sent Events must not wait in any buffer between the app and the client.
    parts.headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    let body = incoming
        .into_data_stream()
        .take_until(ends.cancelled_owned());
    Ok(Response::from_parts(parts, Body::from_stream(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer hf_x"),
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; trove_session=secret; trove_space_access=p; b=2"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::HOST, HeaderValue::from_static("hub:8080"));
        let out = request_headers(&h, None, "http");
        assert!(out.get(header::AUTHORIZATION).is_none());
        assert_eq!(
            out.get(header::COOKIE).map(|v| v.as_bytes()),
            Some(&b"a=1; b=2"[..])
        );
        assert!(out.get("x-private").is_none());
        assert!(out.get("keep-alive").is_none());
        assert!(out.get(header::CONNECTION).is_none());
        assert_eq!(
            out.get(header::HOST).map(|v| v.as_bytes()),
            Some(&b"hub:8080"[..])
        );
    }

    #[test]
    fn an_app_sets_none_of_the_hubs_cookies() {
        let mut h = HeaderMap::new();
        for v in [
            "trove_session=planted; Path=/",
            "app=1; Path=/",
            " TROVE_FORM=x",
            "=trove_session=y",
            "trove_space_access=z; Domain=hub.example",
            "trovey=2",
        ] {
            h.append(header::SET_COOKIE, HeaderValue::from_static(v));
        }
        strip_hub_cookies(&mut h);
        let left: Vec<&[u8]> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(left, vec![&b"app=1; Path=/"[..], &b"trovey=2"[..]]);
    }

    #[test]
    fn only_the_session_cookie_is_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("trove_session=x"));
        assert!(
            request_headers(&h, None, "http")
                .get(header::COOKIE)
                .is_none()
        );
    }

    #[test]
    fn the_sign_in_form_nonce_is_removed_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("trove_form=n; app=1; trove_session=x"),
        );
        assert_eq!(
            request_headers(&h, None, "http").get(header::COOKIE),
            Some(&HeaderValue::from_static("app=1"))
        );
    }

    #[test]
    fn websocket_upgrades_are_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let out = request_headers(&h, None, "http");
        assert_eq!(
            out.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            out.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }
}
