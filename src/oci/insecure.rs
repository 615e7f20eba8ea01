//! Registry-host rules for plain HTTP, one for every stage: BuildKit's
//! push (`registry.insecure` on the image exporter, `src/exec/request.rs`)
//! and mybake's own registry client (`src/publish/registry.rs`) ask the
//! same question here, so a registry is never plain HTTP for one and TLS
//! for the other.

use std::net::{IpAddr, Ipv6Addr};

/// Whether a registry is reached over plain HTTP: loopback hosts
/// (`localhost`, `127.0.0.0/8`, `::1`, with any port) and the hosts listed
/// as insecure (`host:port` exactly, or a bare `host` for any port; a
/// `http://` or `https://` prefix and a trailing `/` are ignored).
pub fn is_plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_loopback() {
            return true;
        }
    }
    insecure.iter().any(|entry| {
        let entry = entry
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        entry.eq_ignore_ascii_case(registry)
            || (host_of(entry).len() == entry.trim_matches(|c| c == '[' || c == ']').len()
                && host_of(entry).eq_ignore_ascii_case(host))
    })
}

/// The host of `host[:port]` / `[v6]:port` / bare `v6`, without brackets.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    if registry.parse::<Ipv6Addr>().is_ok() {
        return registry;
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_hosts() {
        let none: Vec<String> = vec![];
        for r in [
            "localhost:5000",
            "localhost",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_plain_http(r, &none), "{r}");
        }
        for r in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:80",
        ] {
            assert!(!is_plain_http(r, &none), "{r}");
        }
        let insecure = vec!["reg.lan:5000".to_owned(), "http://other.lan/".to_owned()];
        assert!(is_plain_http("reg.lan:5000", &insecure));
        assert!(!is_plain_http("reg.lan:6000", &insecure));
        assert!(is_plain_http("other.lan", &insecure));
        assert!(is_plain_http("other.lan:8080", &insecure));
    }

    /// `MYBAKE_INSECURE_REGISTRIES=reg.lan` (a bare host) covers every port.
    #[test]
    fn bare_host_covers_every_port() {
        let insecure = vec!["reg.lan".to_owned()];
        assert!(is_plain_http("reg.lan:5000", &insecure));
        assert!(is_plain_http("reg.lan", &insecure));
        assert!(!is_plain_http("reg.lan.example:5000", &insecure));
    }
}
