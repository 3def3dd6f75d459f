//! The SSRF guard: a webhook goes only where the server's operator would send it.
//!
//! A callback URL comes from a caller, so without a guard any caller could make the server POST
//! to its own loopback services, the private network, or the cloud metadata endpoint. The guard
//! resolves the destination and refuses it if **any** address it resolves to is loopback,
//! private, link-local, unique-local, carrier-grade NAT, documentation, multicast, reserved or a
//! metadata address — unless an allowlisted network contains it. Redirects are never followed
//! (see [`crate::send`]). The addresses checked are the addresses dialled: the sender connects
//! only to what [`Guard::admit`] returned, so a name cannot resolve one way for the check and
//! another way for the connection.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;
use taskwire_engine::Owner;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an address is not a public destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64/10` (also where some clouds put their metadata service).
    SharedNat,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `169.254.169.254`, `fd00:ec2::254`: cloud instance metadata.
    Metadata,
    /// `fc00::/7`.
    UniqueLocal,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `198.18/15`.
    Documentation,
    /// `224/4`, `ff00::/8`, `255.255.255.255`.
    Multicast,
    /// `240/4`, `192.0.0/24`, `100::/64`, `fec0::/10`, Teredo, and other special ranges.
    Reserved,
}

impl AddressClass {
    /// How the class reads in an error message ("… is a loopback address").
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::SharedNat => "a carrier-grade NAT address",
            Self::LinkLocal => "a link-local address",
            Self::Metadata => "a cloud metadata address",
            Self::UniqueLocal => "a unique-local address",
            Self::Documentation => "a documentation or benchmarking address",
            Self::Multicast => "a multicast or broadcast address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// The class of a non-public address; `None` for a public one. IPv6 forms that embed an IPv4
/// address (mapped, NAT64, 6to4) are judged by the embedded address.
///
/// ```
/// use taskwire_webhook::guard::{AddressClass, classify};
/// assert_eq!(classify("169.254.169.254".parse().unwrap()), Some(AddressClass::Metadata));
/// assert_eq!(classify("::ffff:10.0.0.1".parse().unwrap()), Some(AddressClass::Private));
/// assert_eq!(classify("93.184.216.34".parse().unwrap()), None);
/// ```
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => Metadata,
        (0, _, _) => Unspecified,
        (127, _, _) => Loopback,
        (10, _, _) => Private,
        (172, 16..=31, _) | (192, 168, _) => Private,
        (100, 64..=127, _) => SharedNat,
        (169, 254, _) => LinkLocal,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) => Documentation,
        (192, 0, 0) | (192, 88, 99) => Reserved,
        (224..=239, _, _) => Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Multicast,
        (240..=255, _, _) => Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    Some(match s {
        _ if ip == Ipv6Addr::UNSPECIFIED => Unspecified,
        _ if ip == Ipv6Addr::LOCALHOST => Loopback,
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => Metadata,
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(v4_of(hi, lo)),
        [0x2002, hi, lo, ..] => return classify_v4(v4_of(hi, lo)),
        // IPv4-compatible (deprecated, ::/96).
        [0, 0, 0, 0, 0, 0, _, _] => Reserved,
        [0x0100, 0, 0, 0, ..] => Reserved,
        [0x2001, 0x0db8, ..] => Documentation,
        [0x2001, 0, ..] => Reserved, // Teredo
        [x, ..] if x & 0xfe00 == 0xfc00 => UniqueLocal,
        [x, ..] if x & 0xffc0 == 0xfe80 => LinkLocal,
        [x, ..] if x & 0xffc0 == 0xfec0 => Reserved,
        [x, ..] if x & 0xff00 == 0xff00 => Multicast,
        _ => return None,
    })
}

fn v4_of(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

/// Turns a host name into addresses.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (a name, never an IP literal) at `port`.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` on the blocking pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// What the guard lets through.
#[derive(Clone, Debug, Default)]
pub struct GuardConfig {
    /// Non-public networks destinations may nevertheless be in (e.g. `127.0.0.0/8` for local
    /// development, or the subnet of an internal receiver).
    pub allow: Vec<IpNet>,
    /// Per principal, the only hosts its callbacks may name (`host` or `*.suffix`); the key
    /// `*` applies to callers without an entry of their own (anonymous ones included). Without
    /// any entry, any host that passes the address check is allowed.
    pub owner_hosts: HashMap<String, Vec<String>>,
}

impl GuardConfig {
    /// Allows loopback destinations (`127.0.0.0/8` and `::1`): for local development and tests.
    pub fn allow_loopback(mut self) -> Self {
        self.allow.extend(["127.0.0.0/8", "::1/128"].iter().filter_map(|n| n.parse::<IpNet>().ok()));
        self
    }
}

/// Why a destination was refused. The message is meant for the caller who named it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    /// Not an absolute `http://` or `https://` URL.
    #[error("{0}")]
    BadUrl(String),
    /// The host is not on the caller's allowlist.
    #[error("callbacks to {host} are not allowed for this caller (allowed hosts: {allowed})")]
    HostNotAllowed {
        /// The host named.
        host: String,
        /// The caller's allowlist.
        allowed: String,
    },
    /// The name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Unresolvable {
        /// The host named.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// It resolves to a non-public address that is not allowlisted.
    #[error(
        "refusing to send webhooks to {host}: {address} is {class} (allowlist its network in the server's webhook configuration to permit it)",
        class = .class.describe()
    )]
    Forbidden {
        /// The host named.
        host: String,
        /// The address refused.
        address: IpAddr,
        /// Why.
        class: AddressClass,
    },
}

/// A checked destination: connect only to `addrs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    /// The URL as parsed.
    pub url: url::Url,
    /// The addresses that passed the guard, in resolver order.
    pub addrs: Vec<SocketAddr>,
}

impl Destination {
    /// `host:port`, the key of per-destination limits.
    pub fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        format!("{host}:{}", self.url.port_or_known_default().unwrap_or(80))
    }
}

/// The guard itself. Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    config: Arc<GuardConfig>,
    resolver: Arc<dyn Resolve>,
}

impl Guard {
    /// A guard with the system resolver.
    pub fn new(config: GuardConfig) -> Self {
        Self::with_resolver(config, Arc::new(SystemResolver))
    }

    /// A guard with another resolver (tests map names to addresses without DNS).
    pub fn with_resolver(config: GuardConfig, resolver: Arc<dyn Resolve>) -> Self {
        Self { config: Arc::new(config), resolver }
    }

    /// Checks `url` for `owner` (`None`: a destination the operator configured, which no
    /// per-owner host list restricts) and resolves it.
    pub async fn admit(&self, url: &str, owner: Option<&Owner>) -> Result<Destination, Refusal> {
        let url = url::Url::parse(url).map_err(|e| Refusal::BadUrl(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::BadUrl(format!("callback URLs must be http:// or https://, not {}:", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::BadUrl("callback URLs must not carry credentials".into()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(Refusal::BadUrl("callback URLs need a host".into())),
        };
        if let Some(owner) = owner {
            self.check_owner_hosts(owner, &host)?;
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            _ => self
                .resolver
                .resolve(&host, port)
                .await
                .map_err(|e| Refusal::Unresolvable { host: host.clone(), reason: e.to_string() })?,
        };
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable { host, reason: "no addresses".into() });
        }
        for addr in &addrs {
            self.check_address(&host, addr.ip())?;
        }
        Ok(Destination { url, addrs })
    }

    /// Refuses a non-public address unless an allowlisted network holds it.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match classify(ip) {
            Some(class) if !self.config.allow.iter().any(|net| net.contains(&ip)) => {
                Err(Refusal::Forbidden { host: host.to_owned(), address: ip, class })
            }
            _ => Ok(()),
        }
    }

    fn check_owner_hosts(&self, owner: &Owner, host: &str) -> Result<(), Refusal> {
        let hosts = &self.config.owner_hosts;
        let Some(allowed) = owner.principal.as_ref().and_then(|p| hosts.get(p)).or_else(|| hosts.get("*")) else {
            return Ok(());
        };
        let matches = |pattern: &String| match pattern.strip_prefix("*.") {
            Some(suffix) => host.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.')),
            None => pattern.eq_ignore_ascii_case(host),
        };
        if allowed.iter().any(matches) {
            Ok(())
        } else {
            Err(Refusal::HostNotAllowed { host: host.to_owned(), allowed: allowed.join(", ") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    #[test]
    fn every_non_public_range_is_classified() {
        let cases = [
            ("127.0.0.1", Some(Loopback)),
            ("127.255.0.9", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("0.0.0.0", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(SharedNat)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.1.1", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("fd00::1", Some(UniqueLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(Metadata)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("64:ff9b::a00:1", Some(Private)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2001:db8::1", Some(Documentation)),
            ("192.0.2.5", Some(Documentation)),
            ("198.18.0.1", Some(Documentation)),
            ("224.0.0.1", Some(Multicast)),
            ("255.255.255.255", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("8.8.8.8", None),
            ("2606:4700::1111", None),
        ];
        for (ip, class) in cases {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
    }

    #[test]
    fn owner_host_lists_match_exact_names_and_subdomains() {
        let mut config = GuardConfig::default();
        config.owner_hosts.insert("alice".into(), vec!["hooks.example.com".into(), "*.ci.example".into()]);
        let guard = Guard::new(config);
        let alice = Owner { principal: Some("alice".into()), scope: "s".into() };
        assert!(guard.check_owner_hosts(&alice, "hooks.example.com").is_ok());
        assert!(guard.check_owner_hosts(&alice, "a.ci.example").is_ok());
        assert!(guard.check_owner_hosts(&alice, "evilci.example").is_err());
        assert!(guard.check_owner_hosts(&alice, "example.com").is_err());
        // No entry for bob and no "*": anything passes this check (the address check remains).
        let bob = Owner { principal: Some("bob".into()), scope: "s".into() };
        assert!(guard.check_owner_hosts(&bob, "example.com").is_ok());
    }
}
