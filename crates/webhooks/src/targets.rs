//! The SSRF rule: which addresses a webhook may point at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use wagate_domain::WebhookUrl;

use crate::{TargetRefused, WebhookTargets};

/// Whether `ip` is a public unicast address: not loopback, private (RFC
/// 1918, IPv6 unique local), link-local, multicast, unspecified, broadcast,
/// shared (CGNAT), documentation or otherwise reserved. IPv4 addresses
/// mapped or translated into IPv6 are judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64: judged by its IPv4 …
            && !public_v4(Ipv4Addr::from(
                (u32::from(ip.segments()[6]) << 16) | u32::from(ip.segments()[7]),
            )))
}

/// The SSRF rule of `webhooks.allow_private_targets`: a URL whose host is,
/// or resolves to, an address that is not public is refused — unless
/// private targets are allowed (tests, single-host installs). The transport
/// checks again against the address it actually connects to.
#[derive(Debug, Clone, Copy)]
pub struct AddressPolicy {
    allow_private: bool,
}

impl AddressPolicy {
    /// A policy; `allow_private` lets any address through.
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Whether private targets are allowed.
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// `Ok` when this policy lets `ip` receive deliveries.
    ///
    /// # Errors
    ///
    /// [`TargetRefused`] naming the address class.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), TargetRefused> {
        if self.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(TargetRefused(format!(
                "{ip} is not a public address (loopback, private, link-local, multicast, \
                 unspecified or reserved); set webhooks.allow_private_targets to allow it"
            )))
        }
    }
}

/// The host the HTTP client will connect to for `url`, as the client reads
/// the URL (WHATWG parsing: `http://2130706433/` and `http://0x7f.1/` are
/// `127.0.0.1`), with the port: an IP literal (no DNS asked) or a name.
pub(crate) fn client_host(url: &WebhookUrl) -> Result<(Host, u16), TargetRefused> {
    let parsed = reqwest::Url::parse(url.as_str())
        .map_err(|e| TargetRefused(format!("the URL cannot be used: {e}")))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = parsed
        .host_str()
        .ok_or_else(|| TargetRefused("the URL names no host".into()))?;
    // As the connector does: a host that parses as an address is connected
    // to directly, anything else is resolved.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match bare.parse::<IpAddr>() {
        Ok(ip) => (Host::Ip(ip), port),
        Err(_) => (Host::Name(bare.to_owned()), port),
    })
}

/// See [`client_host`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// An address literal: connected to without DNS.
    Ip(IpAddr),
    /// A name to resolve.
    Name(String),
}

#[async_trait]
impl WebhookTargets for AddressPolicy {
    async fn check(&self, url: &WebhookUrl) -> Result<(), TargetRefused> {
        let (host, port) = client_host(url)?;
        let host = match host {
            Host::Ip(ip) => return self.check_ip(ip),
            Host::Name(name) => name,
        };
        if self.allow_private {
            return Ok(());
        }
        let host = host.as_str();
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| TargetRefused(format!("the host '{host}' does not resolve")))?
            .collect::<Vec<_>>();
        if addrs.is_empty() {
            return Err(TargetRefused(format!("the host '{host}' does not resolve")));
        }
        // Every address must be public: a name with one private address
        // could be made to deliver there.
        addrs.iter().try_for_each(|a| self.check_ip(a.ip()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn urls_naming_private_hosts_are_refused_unless_allowed() {
        let strict = AddressPolicy::new(false);
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://localhost/hook",
            "http://169.254.169.254/latest",
            // Numeric forms the URL parser reads as 127.0.0.1.
            "http://2130706433/hook",
            "http://0x7f.1/hook",
            "http://127.1/hook",
        ] {
            let url = WebhookUrl::parse(url).unwrap();
            assert!(strict.check(&url).await.is_err(), "{url}");
            assert!(AddressPolicy::new(true).check(&url).await.is_ok(), "{url}");
        }
        let public = WebhookUrl::parse("https://93.184.216.34/hook").unwrap();
        assert!(strict.check(&public).await.is_ok());
    }
}
