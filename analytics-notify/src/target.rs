//! SSRF guard for webhook and API targets: https only, and never an address on loopback, a
//! private or unique-local network, link-local (cloud metadata included) or unspecified,
//! unless private targets are explicitly allowed (local development and tests). The check
//! runs on the URL's literal host and again on every address DNS gives at connect time (a
//! resolver wrapped around the system one), and the HTTP client follows no redirect.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use analytics_core::notification::NotifyError;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Which targets outbound HTTP may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    /// Allow http and loopback / private / link-local addresses
    /// (`ANALYTICS_ALLOW_PRIVATE_TARGETS=true`).
    pub allow_private: bool,
}

impl TargetPolicy {
    /// The policy for production: https and public addresses only.
    pub const STRICT: Self = Self {
        allow_private: false,
    };

    /// Checks a URL's scheme and, when its host is an IP literal, the address. A host name
    /// is checked after resolution by the client from [`TargetPolicy::client`].
    pub fn check_url(&self, url: &Url) -> Result<(), NotifyError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err(NotifyError::Permanent("target url must use https".into())),
        }
        match url.host() {
            None => Err(NotifyError::Permanent("target url has no host".into())),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }

    /// Refuses a forbidden address (unless private targets are allowed).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), NotifyError> {
        if !self.allow_private && is_forbidden(ip) {
            return Err(NotifyError::Permanent(format!(
                "target address {ip} is not a public address"
            )));
        }
        Ok(())
    }

    /// An HTTP client that follows no redirect, checks every resolved address against this
    /// policy, and gives up on a request after `timeout`.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { policy: *self }))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .expect("the ring provider is installed and the builder has no fallible option")
    }
}

/// Whether an address is one outbound notifications must never reach by default.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // unique local fc00::/7 (fd00:ec2::254 is a metadata address)
                || (first & 0xfe00) == 0xfc00
                // link-local fe80::/10
                || (first & 0xffc0) == 0xfe80
                // NAT64 of a forbidden v4 address
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && {
                    let o = v6.octets();
                    forbidden_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
                })
        }
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || o[0] == 0
        // carrier-grade NAT 100.64/10
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

/// The system resolver, refusing a name when any of its addresses is forbidden.
#[derive(Debug)]
struct GuardedResolver {
    policy: TargetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                policy.check_ip(a.ip()).map_err(|_| {
                    format!(
                        "{host} resolves to {}, which is not a public address",
                        a.ip()
                    )
                })?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        TargetPolicy::STRICT
            .check_url(&Url::parse(url).unwrap())
            .is_err()
    }

    #[test]
    fn literal_private_addresses_and_plain_http_are_refused() {
        for url in [
            "https://127.0.0.1/x",
            "https://127.8.9.10/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://172.31.255.255/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00:ec2::254]/x",
            "https://[fc12::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://0.0.0.0/x",
            "http://hooks.slack.com/x",
            "ftp://hooks.slack.com/x",
        ] {
            assert!(refused(url), "{url} must be refused");
        }
        for url in [
            "https://hooks.slack.com/services/x",
            "https://8.8.8.8/x",
            "https://172.32.0.1/x",
            "https://[2001:4860::1]/x",
        ] {
            assert!(!refused(url), "{url} must be allowed");
        }
    }

    #[test]
    fn allowing_private_targets_allows_http_and_loopback() {
        let p = TargetPolicy {
            allow_private: true,
        };
        assert!(
            p.check_url(&Url::parse("http://127.0.0.1:9/x").unwrap())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        // `localhost` resolves to 127.0.0.1 / ::1 without any network.
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let client = TargetPolicy {
            allow_private: false,
        }
        .client(Duration::from_secs(5));
        let err = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .expect_err("localhost must be refused");
        let chain = error_chain(&err);
        assert!(chain.contains("not a public address"), "{chain}");
        let allowed = TargetPolicy {
            allow_private: true,
        }
        .client(Duration::from_secs(5));
        let accept = tokio::spawn(async move { server.accept().await.is_ok() });
        let _ = allowed
            .get(format!("http://localhost:{port}/"))
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(accept.await.unwrap(), "the allowed client connects");
    }

    fn error_chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cur = c.source();
        }
        s
    }
}
