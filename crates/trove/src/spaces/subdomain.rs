//! Per-Space subdomains (`[spaces] subdomain_base`): a request whose host is
//! `{label}.{subdomain_base}` is for the app of the Space whose [`label`] that is, served at
//! `/` (for apps that must own the root of their origin).
//!
//! The label is the Hub's pattern, `{namespace}-{name}`, lowercased, with `_` and `.` each
//! written `-` (DNS labels allow neither). Several Spaces may share a label (`a-b/c` and
//! `a/b-c`); such a label names none of them (404: use the path URL), so no Space is ever
//! served under another's name.
//!
//! The hub's session cookie never reaches an app's origin (it is host-only on the hub), so a
//! member of a private Space gets in with a pass signed by the hub: a short-lived **grant**
//! in the URL the hub redirects to, which the Space's origin exchanges for a longer-lived
//! **access** cookie of its own (host-only, HttpOnly). Both name the Space and the user and
//! are checked against the installation key; the user's right to read the Space is asked
//! again on every request, so revoking a member takes effect at once.

use crate::signing::UrlSigner;

/// How long a grant in a URL may be used.
pub const GRANT_TTL_SECS: u64 = 60;
/// How long the access cookie of a Space's origin lasts.
pub const ACCESS_TTL_SECS: u64 = 12 * 3600;
/// The cookie of a Space's origin that carries an access pass (never forwarded to the app).
pub const ACCESS_COOKIE: &str = "trove_space_access";
/// The path on a Space's origin that takes a grant (reserved: never forwarded to the app).
pub const GRANT_PATH: &str = "/.trove/grant";
/// The longest DNS label.
const MAX_LABEL: usize = 63;

/// What a pass is good for; part of what is signed, so one never stands for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassKind {
    /// In the URL, exchanged once for an access cookie.
    Grant,
    /// In the cookie of the Space's origin.
    Access,
    /// In the path of a private Space's app on the hub's origin
    /// (`/spaces/{ns}/{name}/app/.trove/{pass}/…`), where the app runs sandboxed and its
    /// requests carry no cookie of the hub.
    Path,
}

impl PassKind {
    fn purpose(self) -> &'static str {
        match self {
            PassKind::Grant => "space-grant",
            PassKind::Access => "space-access",
            PassKind::Path => "space-path",
        }
    }

    pub fn ttl_secs(self) -> u64 {
        match self {
            PassKind::Grant => GRANT_TTL_SECS,
            PassKind::Access | PassKind::Path => ACCESS_TTL_SECS,
        }
    }
}

/// The subdomain label of a Space: `{namespace}-{name}`, lowercase, `_` and `.` as `-`.
/// `None` when it would be longer than a DNS label may be.
pub fn label(namespace: &str, name: &str) -> Option<String> {
    let label: String = format!("{namespace}-{name}")
        .chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    (label.len() <= MAX_LABEL).then_some(label)
}

/// The label a `Host` header names under `base` (`demo-app.spaces.example:8080` under
/// `spaces.example` is `demo-app`); `None` for any other host.
pub fn label_from_host(host: &str, base: &str) -> Option<String> {
    let host = strip_port(host)?.to_ascii_lowercase();
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    let valid = !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| label.to_owned())
}

/// A host without its `:port` (an IPv6 literal is never a Space's host).
fn strip_port(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        return None;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => Some(name),
        Some(_) => None,
        None => Some(host),
    }
}

/// The origin of a Space's label: the public URL's scheme and port, the label's host.
pub fn origin(public_url: &str, base: &str, label: &str) -> String {
    let (scheme, rest) = public_url.split_once("://").unwrap_or(("http", public_url));
    let authority = rest.split('/').next().unwrap_or(rest);
    let port = if authority.starts_with('[') {
        authority.rsplit_once("]:").map(|(_, p)| p)
    } else {
        authority.rsplit_once(':').map(|(_, p)| p)
    };
    match port {
        Some(port) => format!("{scheme}://{label}.{base}:{port}"),
        None => format!("{scheme}://{label}.{base}"),
    }
}

/// A pass of `kind` for `user_id` to the Space `repo_id`, valid from `now` (unix seconds):
/// `{repo}.{user}.{expires}.{signature}`.
pub fn issue(signer: &UrlSigner, kind: PassKind, repo_id: i64, user_id: i64, now: u64) -> String {
    let expires = now.saturating_add(kind.ttl_secs());
    let (repo, user) = (repo_id.to_string(), user_id.to_string());
    let signature = signer.sign(&[kind.purpose(), &repo, &user], expires);
    format!("{repo}.{user}.{expires}.{signature}")
}

/// The user a pass of `kind` lets into the Space `repo_id`, if it is genuine, unexpired and
/// for that Space.
pub fn check(
    signer: &UrlSigner,
    kind: PassKind,
    pass: &str,
    repo_id: i64,
    now: u64,
) -> Option<i64> {
    let mut parts = pass.split('.');
    let (Some(repo), Some(user), Some(expires), Some(signature), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if repo.parse::<i64>().ok()? != repo_id {
        return None;
    }
    let user_id = user.parse::<i64>().ok()?;
    let expires = expires.parse::<u64>().ok()?;
    // A pass never lives longer than its kind allows, whatever it says.
    if expires > now.saturating_add(kind.ttl_secs()) {
        return None;
    }
    signer
        .verify(&[kind.purpose(), repo, user], expires, signature, now)
        .then_some(user_id)
}

/// The `Set-Cookie` value of an access pass on a Space's origin.
pub fn access_cookie(pass: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{ACCESS_COOKIE}={pass}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ACCESS_TTL_SECS}{secure}"
    )
}

/// Every access pass a `Cookie` header carries (a cookie set by another app of the same
/// base may sit next to ours; only a genuine one lets anyone in).
pub fn access_passes(cookie_header: &str) -> impl Iterator<Item = &str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| name.trim() == ACCESS_COOKIE)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_hubs_pattern() {
        assert_eq!(
            label("Acme", "My_Demo.v2").as_deref(),
            Some("acme-my-demo-v2")
        );
        assert_eq!(label("a-b", "c"), label("a", "b-c"));
        assert_eq!(label("a", &"x".repeat(61)).map(|l| l.len()), Some(63));
        assert_eq!(label("ab", &"x".repeat(61)), None);
    }

    #[test]
    fn hosts_name_a_label_under_the_base_only() {
        let base = "spaces.example";
        assert_eq!(
            label_from_host("acme-demo.spaces.example", base).as_deref(),
            Some("acme-demo")
        );
        assert_eq!(
            label_from_host("ACME-Demo.Spaces.Example:8080", base).as_deref(),
            Some("acme-demo")
        );
        assert_eq!(label_from_host("spaces.example", base), None);
        assert_eq!(label_from_host("a.b.spaces.example", base), None);
        assert_eq!(label_from_host("x.evilspaces.example", base), None);
        assert_eq!(label_from_host("xspaces.example", base), None);
        assert_eq!(label_from_host("a_b.spaces.example", base), None);
        assert_eq!(label_from_host("a.spaces.example:x", base), None);
        assert_eq!(label_from_host("[::1]:80", base), None);
        assert_eq!(label_from_host("hub.example", base), None);
    }

    #[test]
    fn origins_keep_the_public_scheme_and_port() {
        assert_eq!(
            origin("http://127.0.0.1:8080", "s.test", "a-b"),
            "http://a-b.s.test:8080"
        );
        assert_eq!(
            origin("https://hub.example", "spaces.hub.example", "a-b"),
            "https://a-b.spaces.hub.example"
        );
    }

    #[test]
    fn passes_bind_kind_space_user_and_time() {
        let signer = UrlSigner::new(vec![7; 32]);
        let now = 1_000_000;
        let grant = issue(&signer, PassKind::Grant, 5, 9, now);
        assert_eq!(
            check(&signer, PassKind::Grant, &grant, 5, now + 10),
            Some(9)
        );
        // Another Space, the other kind, too late, another key, a changed field.
        assert_eq!(check(&signer, PassKind::Grant, &grant, 6, now), None);
        assert_eq!(check(&signer, PassKind::Access, &grant, 5, now), None);
        assert_eq!(
            check(
                &signer,
                PassKind::Grant,
                &grant,
                5,
                now + GRANT_TTL_SECS + 1
            ),
            None
        );
        assert_eq!(
            check(
                &UrlSigner::new(vec![8; 32]),
                PassKind::Grant,
                &grant,
                5,
                now
            ),
            None
        );
        let forged = grant.replacen("5.9.", "5.1.", 1);
        assert_eq!(check(&signer, PassKind::Grant, &forged, 5, now), None);
        assert_eq!(check(&signer, PassKind::Grant, "5.9", 5, now), None);
        assert_eq!(
            check(&signer, PassKind::Grant, &format!("{grant}.x"), 5, now),
            None
        );
        let access = issue(&signer, PassKind::Access, 5, 9, now);
        assert_eq!(
            check(&signer, PassKind::Access, &access, 5, now + 3600),
            Some(9)
        );
    }

    #[test]
    fn passes_are_found_among_cookies() {
        let header = "a=1; trove_space_access=x.y; trove_session=s; trove_space_access=z";
        assert_eq!(access_passes(header).collect::<Vec<_>>(), vec!["x.y", "z"]);
        assert!(access_cookie("p", true).ends_with("; Secure"));
        assert!(access_cookie("p", false).contains("HttpOnly"));
    }
}
