//! Where deliveries may go. A webhook's URL is chosen by any user with a write token, so
//! without a rule the worker would POST wherever they point it — the hub's own loopback
//! ports, the cloud's metadata service, the private network — and the delivery log would
//! tell them what answered. The rule: only public addresses, unless the operator allows
//! private ones (`[webhooks] allow_private_targets`) or some networks of them
//! (`allowed_targets`).
//!
//! It is applied to what the worker connects to, not to the name in the URL: a name is
//! resolved by [`GuardedResolver`], which hands the HTTP client only the allowed addresses
//! (a name that resolved to a public address when the webhook was made and to a private one
//! now — DNS rebinding — reaches nothing). URLs naming an address never reach a resolver,
//! so [`TargetPolicy::check_url`] judges them before anything is sent. The same check at
//! creation gives an early, clear refusal for literal addresses and `localhost` names.

use crate::config::WebhooksConfig;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// A target the policy refuses, as the delivery log and the API's refusal show it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An address: a URL's literal one, or the one a name resolved to.
    #[error("the target address {address} is not allowed: {reason}")]
    Address {
        address: IpAddr,
        reason: &'static str,
    },
    /// A name every address of which is refused. The addresses are not named: the log must
    /// not become a way to look up the private network's names.
    #[error("the target host {host} is not allowed: it resolves only to {reason} addresses")]
    Host { host: String, reason: &'static str },
}

/// Which addresses deliveries may go to: public ones, plus what the operator allows.
#[derive(Clone, Debug, Default)]
pub struct TargetPolicy {
    /// Every address is allowed (`allow_private_targets`).
    allow_private: bool,
    /// Non-public networks allowed anyway (`allowed_targets`).
    allowed: Vec<IpNet>,
}

impl TargetPolicy {
    pub fn from_config(config: &WebhooksConfig) -> TargetPolicy {
        TargetPolicy {
            allow_private: config.allow_private_targets,
            allowed: config.allowed_targets.clone(),
        }
    }

    /// Whether a delivery may connect to `address`.
    pub fn check(&self, address: IpAddr) -> Result<(), Refused> {
        if self.allow_private {
            return Ok(());
        }
        // `::ffff:127.0.0.1` reaches 127.0.0.1: judge (and match against the allowed
        // networks) the IPv4 address it stands for.
        let canonical = address.to_canonical();
        let Some(reason) = non_public(canonical) else {
            return Ok(());
        };
        if self.allowed.iter().any(|net| net.contains(&canonical)) {
            return Ok(());
        }
        Err(Refused::Address { address, reason })
    }

    /// The check of a URL naming an address, made before each delivery: such a URL never
    /// reaches a resolver. Names pass: [`GuardedResolver`] judges what they resolve to.
    pub fn check_address_in_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        // The URL parser writes every IPv4 spelling (`2130706433`, `0x7f.1`) in dotted
        // decimal, and IPv6 in brackets.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(address) => self.check(address),
            Err(_) => Ok(()),
        }
    }

    /// The check of a webhook's URL when it is made or changed, for an early, clear
    /// refusal: [`Self::check_address_in_url`], and `localhost` and its subdomains judged as
    /// loopback (they never leave the machine, RFC 6761). Other names pass: their addresses
    /// are judged when they are resolved, at each delivery.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        self.check_address_in_url(url)?;
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return self
                .check(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .map_err(|_| Refused::Host {
                    host: host.to_owned(),
                    reason: "loopback",
                });
        }
        Ok(())
    }

    /// The addresses `host` resolved to that a delivery may connect to; an error naming why
    /// when there is none.
    pub fn filter(
        &self,
        host: &str,
        addresses: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let mut allowed = Vec::new();
        let mut refused = None;
        for address in addresses {
            match self.check(address.ip()) {
                Ok(()) => allowed.push(address),
                Err(Refused::Address { reason, .. }) => refused = refused.or(Some(reason)),
                Err(Refused::Host { reason, .. }) => refused = refused.or(Some(reason)),
            }
        }
        match (allowed.is_empty(), refused) {
            (true, Some(reason)) => Err(Refused::Host {
                host: host.to_owned(),
                reason,
            }),
            _ => Ok(allowed),
        }
    }
}

/// Why `address` is not a public one (loopback, private, link-local…), or `None` for a
/// public address. IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged
/// by that address.
pub fn non_public(address: IpAddr) -> Option<&'static str> {
    match address.to_canonical() {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = if ip.is_unspecified() {
        "unspecified"
    } else if a == 0 {
        "this network (0.0.0.0/8)"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (b & 0xc0) == 64 {
        "shared address space (100.64.0.0/10)"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_documentation() {
        "documentation"
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b & 0xfe) == 18) || a >= 240 {
        // IETF protocol assignments, benchmarking, reserved for future use.
        "reserved"
    } else {
        return None;
    };
    Some(reason)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    let reason = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "private (site-local)"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "private (unique local)"
    } else if ip.is_multicast() {
        "multicast"
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        "documentation"
    } else if s[..6] == [0; 6] {
        // `::a.b.c.d`, the deprecated IPv4-compatible form (`::ffff:a.b.c.d` is canonical
        // IPv4 by now).
        "reserved (IPv4-compatible)"
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        // NAT64's well-known prefix reaches the IPv4 address in its last 32 bits.
        return non_public_v4(embedded(s[6], s[7]));
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        "reserved (local-use NAT64)"
    } else if s[0] == 0x2002 {
        // 6to4 reaches the IPv4 address after its first 16 bits.
        return non_public_v4(embedded(s[1], s[2]));
    } else if s[0] == 0x100 && s[1..4] == [0; 3] {
        "reserved (discard-only)"
    } else if s[0] == 0x2001 && s[1] == 0 {
        "reserved (Teredo)"
    } else {
        return None;
    };
    Some(reason)
}

/// The HTTP client's resolver: the system's (`getaddrinfo`, as reqwest's default), then
/// [`TargetPolicy::filter`], so the client connects only to allowed addresses.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<TargetPolicy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the client puts the URL's (or the scheme's) in.
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed = policy.filter(&host, resolved)?;
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().expect("an IPv4 address"))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().expect("an IPv6 address"))
    }

    fn policy(allow_private: bool, allowed: &[&str]) -> TargetPolicy {
        TargetPolicy {
            allow_private,
            allowed: allowed
                .iter()
                .map(|n| n.parse().expect("a network"))
                .collect(),
        }
    }

    #[test]
    fn every_non_public_ipv4_range_is_named() {
        for (address, reason) in [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network (0.0.0.0/8)"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("169.254.0.1", "link-local"),
            ("100.64.0.1", "shared address space (100.64.0.0/10)"),
            ("100.127.255.255", "shared address space (100.64.0.0/10)"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("192.0.0.8", "reserved"),
            ("198.18.0.1", "reserved"),
            ("240.0.0.1", "reserved"),
        ] {
            assert_eq!(non_public(v4(address)), Some(reason), "{address}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
        ] {
            assert_eq!(non_public(v4(public)), None, "{public}");
        }
    }

    #[test]
    fn every_non_public_ipv6_range_is_named() {
        for (address, reason) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "private (site-local)"),
            ("fc00::1", "private (unique local)"),
            ("fd12:3456::1", "private (unique local)"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("::7f00:1", "reserved (IPv4-compatible)"),
            ("64:ff9b:1::1", "reserved (local-use NAT64)"),
            ("100::1", "reserved (discard-only)"),
            ("2001::1", "reserved (Teredo)"),
        ] {
            assert_eq!(non_public(v6(address)), Some(reason), "{address}");
        }
        for public in ["2606:4700:4700::1111", "2a00:1450::1", "64:ff9b::808:808"] {
            assert_eq!(non_public(v6(public)), None, "{public}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_address() {
        for (address, reason) in [
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:100.64.0.1", "shared address space (100.64.0.0/10)"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::ffff:255.255.255.255", "broadcast"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "private"),
        ] {
            assert_eq!(non_public(v6(address)), Some(reason), "{address}");
        }
        assert_eq!(non_public(v6("::ffff:8.8.8.8")), None);
        assert_eq!(non_public(v6("2002:808:808::1")), None);
    }

    #[test]
    fn the_policy_refuses_non_public_addresses_unless_allowed() {
        let default = TargetPolicy::default();
        assert_eq!(
            default.check(v4("127.0.0.1")).map_err(|e| e.to_string()),
            Err("the target address 127.0.0.1 is not allowed: loopback".to_owned())
        );
        assert!(default.check(v6("::ffff:127.0.0.1")).is_err());
        assert!(default.check(v4("93.184.216.34")).is_ok());

        let everything = policy(true, &[]);
        for address in [v4("127.0.0.1"), v4("169.254.169.254"), v6("::1")] {
            assert!(everything.check(address).is_ok(), "{address}");
        }

        let some = policy(false, &["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"]);
        assert!(some.check(v4("10.9.8.7")).is_ok());
        assert!(some.check(v6("::ffff:10.9.8.7")).is_ok());
        assert!(some.check(v6("fd00::5")).is_ok());
        assert!(some.check(v4("127.0.0.1")).is_ok());
        assert!(some.check(v4("127.0.0.2")).is_err());
        assert!(some.check(v4("192.168.0.1")).is_err());
        assert!(some.check(v4("169.254.169.254")).is_err());
        assert!(some.check(v4("8.8.8.8")).is_ok());
    }

    #[test]
    fn urls_with_literal_addresses_and_localhost_names_are_judged_before_sending() {
        let default = TargetPolicy::default();
        let check = |url: &str| {
            default
                .check_url(&reqwest::Url::parse(url).expect("a URL"))
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            check("http://127.0.0.1:8080/hook"),
            Err("the target address 127.0.0.1 is not allowed: loopback".to_owned())
        );
        // Spellings the URL parser turns into the same address.
        assert!(check("http://2130706433/").is_err());
        assert!(check("http://0x7f.1/").is_err());
        assert!(check("http://[::1]/").is_err());
        assert!(check("http://[::ffff:7f00:1]/").is_err());
        assert!(check("http://169.254.169.254/latest/meta-data/").is_err());
        assert!(check("http://[fd00::1]:9/").is_err());
        assert!(check("http://0.0.0.0:80/").is_err());
        assert_eq!(
            check("http://localhost:9/"),
            Err(
                "the target host localhost is not allowed: it resolves only to loopback addresses"
                    .to_owned()
            )
        );
        assert!(check("http://LOCALHOST./").is_err());
        assert!(check("http://hub.localhost/").is_err());
        assert!(check("https://hooks.example.com/x").is_ok());
        assert!(check("http://8.8.8.8/").is_ok());
        assert!(check("http://notlocalhost/").is_ok());

        // Before a delivery only addresses are judged: names go to the resolver.
        let localhost = reqwest::Url::parse("http://localhost:9/").expect("a URL");
        assert!(default.check_address_in_url(&localhost).is_ok());
        let literal = reqwest::Url::parse("http://[::1]:9/").expect("a URL");
        assert!(default.check_address_in_url(&literal).is_err());

        let loopback = policy(false, &["127.0.0.0/8"]);
        let url = reqwest::Url::parse("http://localhost:9/").expect("a URL");
        assert!(loopback.check_url(&url).is_ok());
    }

    #[test]
    fn the_filter_keeps_allowed_addresses_and_refuses_names_with_none() {
        let default = TargetPolicy::default();
        let at = |ip: IpAddr| SocketAddr::new(ip, 0);
        let mixed = [at(v4("10.0.0.5")), at(v4("93.184.216.34")), at(v6("::1"))];
        assert_eq!(
            default.filter("mixed.example", mixed),
            Ok(vec![at(v4("93.184.216.34"))])
        );
        let internal = [at(v4("10.0.0.5")), at(v6("fd00::5"))];
        let refused = default
            .filter("db.corp.example", internal)
            .expect_err("refused");
        assert_eq!(
            refused.to_string(),
            "the target host db.corp.example is not allowed: it resolves only to private addresses"
        );
        assert!(!refused.to_string().contains("10.0.0.5"));
        assert_eq!(
            policy(false, &["10.0.0.0/8"]).filter("db.corp.example", internal),
            Ok(vec![at(v4("10.0.0.5"))])
        );
        assert_eq!(default.filter("nothing.example", []), Ok(vec![]));
    }

    #[tokio::test]
    async fn the_resolver_hands_out_no_refused_address() {
        // `localhost` resolves through the hosts file: no DNS server is asked.
        let name = |n: &str| n.parse::<reqwest::dns::Name>().expect("a name");
        let guarded = GuardedResolver::new(Arc::new(TargetPolicy::default()));
        let error = match guarded.resolve(name("localhost")).await {
            Ok(addresses) => panic!("resolved to {:?}", addresses.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let refused = error.downcast_ref::<Refused>().expect("a refusal");
        assert!(matches!(
            refused,
            Refused::Host {
                reason: "loopback",
                ..
            }
        ));

        let open = GuardedResolver::new(Arc::new(policy(true, &[])));
        let addresses: Vec<SocketAddr> = open
            .resolve(name("localhost"))
            .await
            .expect("resolved")
            .collect();
        assert!(!addresses.is_empty());
        assert!(addresses.iter().all(|a| a.ip().is_loopback()));
    }
}
