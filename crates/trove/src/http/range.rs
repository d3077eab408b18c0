//! The `Range` request header, read one way by every surface that serves bytes (resolve, the
//! LFS download action, Xet reconstructions and fetches).
//!
//! The rule (RFC 9110 §14.2, written in `docs/errors.md`): a header that is not one
//! syntactically valid `bytes=` range — another unit, several ranges, garbage — is ignored and
//! the whole body is served (200). A valid range that selects nothing (its first byte at or
//! past the end, `last < first`, a zero-length suffix, any range of an empty body) answers
//! 416 with `Content-Range: bytes */size`. A valid range reaching past the end is clamped.

use crate::error::{ApiError, ApiResult};
use axum::http::{HeaderMap, HeaderValue, header};

/// A satisfiable byte range of a body, `[start, end)`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The `Content-Range` value of a 206 answer for a body of `size` bytes.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end - 1)
    }
}

/// The range `headers` ask for out of a body of `size` bytes: `None` to serve it all (no
/// `Range`, or one we ignore), or the `RangeNotSatisfiable` error (416).
pub fn requested(headers: &HeaderMap, size: u64) -> ApiResult<Option<ByteRange>> {
    requested_by(headers.get(header::RANGE), size)
}

/// [`requested`], given the `Range` header's value (`None`: the request had none).
pub fn requested_by(range: Option<&HeaderValue>, size: u64) -> ApiResult<Option<ByteRange>> {
    match range.map(|v| v.to_str()) {
        Some(Ok(spec)) => parse(spec, size),
        // Not visible ASCII: not a range we can parse, so ignored like any other.
        Some(Err(_)) | None => Ok(None),
    }
}

/// One `Range` header value against a body of `size` bytes; see the module docs for the rule.
pub fn parse(spec: &str, size: u64) -> ApiResult<Option<ByteRange>> {
    let Some(spec) = Spec::parse(spec) else {
        return Ok(None);
    };
    let unsatisfiable = Err(ApiError::RangeNotSatisfiable { size });
    let (start, end) = match spec {
        Spec::Suffix(n) => {
            if n == 0 || size == 0 {
                return unsatisfiable;
            }
            (size.saturating_sub(n), size)
        }
        Spec::From { first, last } => {
            if first >= size || last.is_some_and(|last| last < first) {
                return unsatisfiable;
            }
            let end = last.map_or(size, |last| last.saturating_add(1).min(size));
            (first, end)
        }
    };
    Ok(Some(ByteRange { start, end }))
}

/// The one range-spec of a `bytes=` header, before it meets the body's size.
#[derive(Debug, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last` (inclusive).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl Spec {
    /// `None` for anything but exactly one well-formed byte range (units are
    /// case-insensitive; whitespace around the spec is tolerated).
    fn parse(value: &str) -> Option<Spec> {
        let (unit, set) = value.trim().split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
            return None;
        }
        let (first, last) = set.trim().split_once('-')?;
        if first.is_empty() {
            return Some(Spec::Suffix(number(last)?));
        }
        let first = number(first)?;
        let last = if last.is_empty() {
            None
        } else {
            Some(number(last)?)
        };
        Some(Spec::From { first, last })
    }
}

/// ASCII digits only (no sign, no space); too many digits for a u64 saturates, which still
/// means "past any end".
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(spec: &str, size: u64) -> Option<(u64, u64)> {
        parse(spec, size)
            .unwrap_or_else(|e| panic!("{spec}: {e}"))
            .map(|r| (r.start, r.end))
    }

    fn unsatisfiable(spec: &str, size: u64) -> bool {
        matches!(parse(spec, size), Err(ApiError::RangeNotSatisfiable { size: s }) if s == size)
    }

    #[test]
    fn ranges_as_clients_send_them() {
        assert_eq!(range("bytes=0-100000", 10), Some((0, 10)));
        assert_eq!(range("bytes=100-1109", 5000), Some((100, 1110)));
        assert_eq!(range("bytes=4000-", 5000), Some((4000, 5000)));
        assert_eq!(range("bytes=-10", 5000), Some((4990, 5000)));
        assert_eq!(range("bytes=-10000", 5000), Some((0, 5000)));
        assert_eq!(range("bytes=4999-4999", 5000), Some((4999, 5000)));
        assert_eq!(range("Bytes=2-4", 5000), Some((2, 5)));
        assert_eq!(range(" bytes= 2-4 ", 5000), Some((2, 5)));
        assert_eq!(
            range("bytes=0-99999999999999999999999", 10),
            Some((0, 10)),
            "an overlong last byte is clamped"
        );
    }

    #[test]
    fn anything_but_one_valid_range_is_ignored() {
        for spec in [
            "bytes=abc",
            "bytes=",
            "bytes=,",
            "bytes=5",
            "bytes=--1",
            "bytes=x-5",
            "bytes=5-x",
            "bytes=-",
            "bytes=-x",
            "bytes=+1-2",
            "bytes=1 -2",
            "bytes=0-1,5-6",
            "bytes=0-1, 5-6",
            "items=0-1",
            "bytes",
            "",
            "=0-1",
        ] {
            assert_eq!(range(spec, 5000), None, "{spec:?}");
        }
    }

    #[test]
    fn valid_ranges_that_select_nothing_are_unsatisfiable() {
        assert!(unsatisfiable("bytes=5000-", 5000));
        assert!(unsatisfiable("bytes=5000-6000", 5000));
        assert!(unsatisfiable("bytes=99999999999999999999999-", 5000));
        assert!(unsatisfiable("bytes=10-5", 5000));
        assert!(unsatisfiable("bytes=-0", 5000));
        assert!(unsatisfiable("bytes=0-", 0));
        assert!(unsatisfiable("bytes=-5", 0));
    }

    #[test]
    fn header_values_that_are_not_text_are_ignored() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested(&headers, 10).expect("no range"), None);
        headers.insert(
            header::RANGE,
            axum::http::HeaderValue::from_bytes(b"bytes=\xff-1").expect("opaque value"),
        );
        assert_eq!(requested(&headers, 10).expect("ignored"), None);
        headers.insert(header::RANGE, "bytes=1-2".parse().expect("value"));
        assert_eq!(
            requested(&headers, 10).expect("valid"),
            Some(ByteRange { start: 1, end: 3 })
        );
    }
}
