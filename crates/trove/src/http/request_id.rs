//! The id of each request: the client's own trace id when it sent one, else a fresh one;
//! echoed as `X-Request-Id` and carried as a request extension for every log line.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The request id of a request, as [`choose`] chose it.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// The id of the request with `headers`: the client's own trace id when it sent one, else a fresh one. Every
/// response carries it as `X-Request-Id` (the client shows it in errors) and every log line
/// of the request names it (`http::every_request`).
pub fn choose(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-amzn-trace-id")
        .or_else(|| headers.get("x-request-id"))
        .cloned()
        .unwrap_or_else(|| {
            // Written into a buffer on the stack: the header value is the one allocation.
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = fresh_id().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(id).expect("a uuid is a valid header value")
        })
}

/// The response header that carries the id.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

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
