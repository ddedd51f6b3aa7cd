//! The SSRF rule: which addresses a webhook may point at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use wagate_domain::WebhookUrl;

use crate::{TargetRefused, WebhookTargets};

/// Whether `ip` is a public unicast address: not loopback, private (RFC
/// 1918, IPv6 unique local), link-local, multicast, unspecified, broadcast,
/// shared (CGNAT), documentation or otherwise reserved. An IPv6 address
/// that carries an IPv4 one (mapped, SIIT-translated, NAT64, 6to4) is
/// judged as that IPv4 address; IPv4-compatible addresses (`::a.b.c.d`,
/// deprecated), local-use NAT64 (`64:ff9b:1::/48`) and the IETF protocol
/// block (`2001::/23`, Teredo included) are never public.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
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

/// The IPv4 address an IPv6 address stands for, when it is one of the
/// forms a host or a translator turns into an IPv4 connection.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        // ::ffff:a.b.c.d, IPv4-mapped.
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // ::ffff:0:a.b.c.d, IPv4-translated (SIIT).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix.
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 2002:AABB:CCDD::/48, 6to4: the relay reaches a.b.c.d.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || s[..6] == [0; 6] // ::/96, IPv4-compatible (`::127.0.0.1`): deprecated, never public
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 other than the well-known /96 (local use)
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] & 0xfff0) == 0x3ff0 // documentation (3fff::/20)
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0) // site-local (deprecated)
}

/// An SSRF rule: a URL whose host is, or resolves to, an address that is
/// not public is refused — unless private targets are allowed (tests,
/// single-host installs). Webhooks follow `webhooks.allow_private_targets`,
/// message media URLs `messages.allow_private_media_urls`
/// ([`AddressPolicy::for_setting`]). The transports check again against the
/// address they actually connect to.
#[derive(Debug, Clone, Copy)]
pub struct AddressPolicy {
    allow_private: bool,
    /// The setting that allows private addresses, named in refusals.
    setting: &'static str,
}

impl AddressPolicy {
    /// The webhooks' policy (`webhooks.allow_private_targets`);
    /// `allow_private` lets any address through.
    pub fn new(allow_private: bool) -> Self {
        Self::for_setting(allow_private, "webhooks.allow_private_targets")
    }

    /// A policy that `setting` (named in refusals) switches.
    pub fn for_setting(allow_private: bool, setting: &'static str) -> Self {
        Self {
            allow_private,
            setting,
        }
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
                 unspecified or reserved); set {} to allow it",
                self.setting
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
            // IPv4-compatible, SIIT-translated, local-use NAT64, 6to4,
            // Teredo, discard, the newer documentation block.
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:0:127.0.0.1",
            "::ffff:0:10.0.0.1",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
            "3fff::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
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
            // IPv6 forms of loopback the IPv6 rules alone judged public.
            "http://[::127.0.0.1]/hook",
            "http://[::ffff:0:127.0.0.1]/hook",
            "http://[64:ff9b:1::7f00:1]/hook",
        ] {
            let url = WebhookUrl::parse(url).unwrap();
            assert!(strict.check(&url).await.is_err(), "{url}");
            assert!(AddressPolicy::new(true).check(&url).await.is_ok(), "{url}");
        }
        let public = WebhookUrl::parse("https://93.184.216.34/hook").unwrap();
        assert!(strict.check(&public).await.is_ok());
        // A refusal names the setting that would allow it.
        let local = WebhookUrl::parse("http://127.0.0.1/a").unwrap();
        let media = AddressPolicy::for_setting(false, "messages.allow_private_media_urls");
        assert!(
            media
                .check(&local)
                .await
                .unwrap_err()
                .0
                .contains("messages.allow_private_media_urls")
        );
    }
}
