//! The value types configs are written in: durations, sizes, addresses,
//! URLs, log levels, and the `[listen]` section every mode shares.

use std::net::SocketAddr;
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

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Overridden by `RUST_LOG` when that is set.
    pub level: LogLevel,
}

/// `[listen]`: where a mode serves its HTTP endpoints. The same section,
/// spelled the same, in the agent's, the exporter's and the pusher's config
/// (read by `config::listen_section`).
#[derive(Clone, Debug)]
pub struct Listen {
    /// `host:port`; loopback by default in every mode.
    pub address: ListenAddr,
}

impl Listen {
    /// `[listen]` with `address` defaulting to `default` (a literal).
    pub fn on(default: &str) -> Listen {
        Listen {
            address: ListenAddr(default.parse().expect("a valid default address")),
        }
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
}
