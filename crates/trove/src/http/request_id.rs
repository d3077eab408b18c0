//! The id of each request: the client's own trace id when it sent one, else a fresh one;
//! echoed as `X-Request-Id` and carried as a request extension for every log line.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The request id of a request, as [`request_id`] chose it.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// Every response carries `X-Request-Id` (the client shows it in errors): the client's own
/// trace id when it sent one, else a fresh one. The id is also a request extension
/// ([`RequestId`]) for the log lines.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-amzn-trace-id")
        .or_else(|| request.headers().get("x-request-id"))
        .cloned()
        .unwrap_or_else(|| {
            // Written into a buffer on the stack: the header value is the one allocation.
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = fresh_id().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(id).expect("a uuid is a valid header value")
        });
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(HeaderName::from_static("x-request-id"), id);
    response
}

/// A random (version 4) UUID from this thread's generator (`rand`'s, a CSPRNG seeded from
/// the system and reseeded as it goes), not a `getrandom` system call per request as
/// `Uuid::new_v4` makes.
pub fn fresh_id() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fresh_ids_are_random_version_4_uuids() {
        let a = super::fresh_id();
        let b = super::fresh_id();
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
