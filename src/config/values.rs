//! The value types configs are written in: durations, sizes, addresses,
//! URLs, log levels, and the `[listen]` section every mode shares.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the human way: `"100ms"`, `"10s"`, `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match humantime::parse_duration(&s) {
            Ok(v) if !v.is_zero() => Ok(HumanDuration(v)),
            Ok(_) => Err(serde::de::Error::custom(format!(
                "duration `{s}` must be greater than zero"
            ))),
            Err(e) => Err(serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write e.g. \"100ms\", \"10s\", \"1m\""
            ))),
        }
    }
}

/// A size written the human way: `"512MiB"`, `"64KiB"`, `"1GB"`, `"1000"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Option<u64> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return None,
        };
        n.checked_mul(mult)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ByteSize::parse(&s).map(ByteSize).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size `{s}`; write e.g. \"512MiB\", \"64KiB\", \"1GB\""
            ))
        })
    }
}

/// A `host:port` socket address to listen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(ListenAddr).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid listen address `{s}`; write an IP and a port, e.g. \"127.0.0.1:4251\" or \"[::1]:4251\""
            ))
        })
    }
}

/// An `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl(pub String);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(HttpUrl(s)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid URL `{s}`; write e.g. \"http://127.0.0.1:4251\""
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Overridden by `RUST_LOG` when that is set.
    pub level: LogLevel,
}

/// `[listen]`: where and how a mode serves its HTTP endpoints. The same
/// section, spelled the same, in every mode's config (read by
/// `config::listen_section`); the files it names are read and checked by
/// `serve::check_listen`.
#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    /// `host:port`; loopback by default in every mode.
    pub address: ListenAddr,
    /// PEM certificate chain and key: both set = https only.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA (mutual TLS).
    pub tls_client_ca_file: Option<PathBuf>,
    /// `name = "<bcrypt hash>"`, as `htpasswd -nBC 10 name` writes.
    pub basic_auth_users: BTreeMap<String, String>,
    /// A file holding the token `Authorization: Bearer` must carry.
    pub bearer_token_file: Option<PathBuf>,
    /// Client networks allowed; empty = every address.
    pub allow: Vec<Cidr>,
    /// exporter-toolkit's web configuration YAML (TLS, basic auth, headers),
    /// instead of the keys above.
    pub web_config_file: Option<PathBuf>,
    /// A client must send a whole request header within this (and finish
    /// the TLS handshake within it), from connect or from its first byte.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent connections; at the cap the oldest connection that has
    /// not completed a request is closed to make room.
    pub max_connections: usize,
}

impl Listen {
    /// `[listen]` with `address` defaulting to `default` (a literal).
    pub fn on(default: &str) -> Listen {
        Listen {
            address: ListenAddr(default.parse().expect("a valid default address")),
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            basic_auth_users: BTreeMap::new(),
            bearer_token_file: None,
            allow: Vec::new(),
            web_config_file: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 256,
        }
    }

    /// The files whose contents the server uses (re-read when they change).
    pub fn files(&self) -> Vec<PathBuf> {
        [
            &self.tls_cert_file,
            &self.tls_key_file,
            &self.tls_client_ca_file,
            &self.bearer_token_file,
            &self.web_config_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// A client network, `10.0.0.0/8` or `::1/128` (a bare address is /32 or
/// /128). IPv4-mapped IPv6 clients match IPv4 networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let host_bits = bits - self.prefix as u32;
        if host_bits >= 128 {
            return true;
        }
        (net >> host_bits) == (ip >> host_bits)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid network `{s}`; write e.g. \"10.0.0.0/8\", \"127.0.0.1\" or \"::1/128\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(ByteSize::parse("512MiB"), Some(512 << 20));
        assert_eq!(ByteSize::parse("1000"), Some(1000));
        assert_eq!(ByteSize::parse("1GB"), Some(1_000_000_000));
        assert_eq!(ByteSize::parse("12 parsecs"), None);
        assert_eq!(ByteSize::parse("99999999999TiB"), None);
    }

    #[test]
    fn networks_match() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c("127.0.0.0/8").contains(ip("127.0.0.2")));
        assert!(!c("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(c("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(c("::1/128").contains(ip("::1")));
        assert!(!c("::1/128").contains(ip("127.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(c("::/0").contains(ip("2001:db8::1")));
        assert!(c("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("ten/8"), None);
    }
}
