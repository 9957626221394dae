//! A bounded decoder for msgpack snapshots: metriken-exposition's
//! `SnapshotV1` and `SnapshotV2` in rmp-serde's positional layout, as our
//! agent and Rezolus agents write them.
//!
//! Hand-written rather than serde-derived because the input is untrusted:
//! every length is checked against the bytes left before anything is
//! allocated, unknown values are skipped with a nesting cap, and a
//! malformed snapshot is an error value, never a panic.

use std::fmt;
use std::time::{Duration, SystemTime};

use rmp::Marker;

use super::{Metric, Snapshot, Stamp, Value};
use crate::histogram::Layout;

/// Deepest nesting skipped inside an unknown value.
const MAX_DEPTH: usize = 16;

/// Metadata keys that describe the series rather than label it.
const NOT_LABELS: [&str; 4] = ["metric", "unit", "grouping_power", "max_value_power"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset where decoding stopped.
    pub offset: usize,
    pub what: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid snapshot at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for Error {}

type Result<T> = std::result::Result<T, Error>;

pub fn decode(buf: &[u8]) -> Result<Snapshot> {
    let mut r = Reader { buf, pos: 0 };
    let snapshot = r.snapshot()?;
    if r.pos != buf.len() {
        return Err(r.error(format!("{} trailing bytes", buf.len() - r.pos)));
    }
    Ok(snapshot)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl<'a> Reader<'a> {
    fn error(&self, what: impl Into<String>) -> Error {
        Error {
            offset: self.pos,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(self.error(format!("truncated: {n} bytes needed")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| acc << 8 | *b as u64))
    }

    fn marker(&mut self) -> Result<Marker> {
        Ok(Marker::from_u8(self.take(1)?[0]))
    }

    fn peek(&self) -> Option<Marker> {
        self.buf.get(self.pos).map(|b| Marker::from_u8(*b))
    }

    /// A length that must fit in the bytes left, `min_size` bytes per item:
    /// an absurd length fails here, before anything is allocated.
    fn bounded(&self, len: u64, min_size: usize) -> Result<usize> {
        let left = (self.buf.len() - self.pos) as u64;
        if len.saturating_mul(min_size as u64) > left {
            return Err(self.error(format!("length {len} exceeds the {left} bytes left")));
        }
        Ok(len as usize)
    }

    fn array_len(&mut self) -> Result<usize> {
        let len = match self.marker()? {
            Marker::FixArray(n) => n as u64,
            Marker::Array16 => self.be(2)?,
            Marker::Array32 => self.be(4)?,
            m => return Err(self.error(format!("expected an array, found {m:?}"))),
        };
        self.bounded(len, 1)
    }

    fn map_len(&mut self) -> Result<usize> {
        let len = match self.marker()? {
            Marker::FixMap(n) => n as u64,
            Marker::Map16 => self.be(2)?,
            Marker::Map32 => self.be(4)?,
            m => return Err(self.error(format!("expected a map, found {m:?}"))),
        };
        self.bounded(len, 2)
    }

    /// Any msgpack integer as i128, so u64 and i64 both fit.
    fn int(&mut self) -> Result<i128> {
        Ok(match self.marker()? {
            Marker::FixPos(n) => n as i128,
            Marker::FixNeg(n) => n as i128,
            Marker::U8 => self.be(1)? as i128,
            Marker::U16 => self.be(2)? as i128,
            Marker::U32 => self.be(4)? as i128,
            Marker::U64 => self.be(8)? as i128,
            Marker::I8 => self.be(1)? as u8 as i8 as i128,
            Marker::I16 => self.be(2)? as u16 as i16 as i128,
            Marker::I32 => self.be(4)? as u32 as i32 as i128,
            Marker::I64 => self.be(8)? as i64 as i128,
            m => return Err(self.error(format!("expected an integer, found {m:?}"))),
        })
    }

    fn u64(&mut self) -> Result<u64> {
        let v = self.int()?;
        u64::try_from(v).map_err(|_| self.error(format!("{v} is not an unsigned 64-bit value")))
    }

    fn i64(&mut self) -> Result<i64> {
        let v = self.int()?;
        i64::try_from(v).map_err(|_| self.error(format!("{v} is not a signed 64-bit value")))
    }

    fn str(&mut self) -> Result<&'a str> {
        let len = match self.marker()? {
            Marker::FixStr(n) => n as u64,
            Marker::Str8 => self.be(1)?,
            Marker::Str16 => self.be(2)?,
            Marker::Str32 => self.be(4)?,
            m => return Err(self.error(format!("expected a string, found {m:?}"))),
        };
        let len = self.bounded(len, 1)?;
        let start = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| Error {
            offset: start,
            what: "string is not UTF-8".into(),
        })
    }

    /// Skips one value of any type, nesting at most `MAX_DEPTH` deep.
    fn skip(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        let m = self.marker()?;
        let (items, bytes) = match m {
            Marker::Null | Marker::True | Marker::False => (0, 0),
            Marker::FixPos(_) | Marker::FixNeg(_) => (0, 0),
            Marker::U8 | Marker::I8 => (0, 1),
            Marker::U16 | Marker::I16 => (0, 2),
            Marker::U32 | Marker::I32 | Marker::F32 => (0, 4),
            Marker::U64 | Marker::I64 | Marker::F64 => (0, 8),
            Marker::FixStr(n) => (0, n as u64),
            Marker::Str8 | Marker::Bin8 => (0, self.be(1)?),
            Marker::Str16 | Marker::Bin16 => (0, self.be(2)?),
            Marker::Str32 | Marker::Bin32 => (0, self.be(4)?),
            Marker::FixArray(n) => (n as u64, 0),
            Marker::Array16 => (self.be(2)?, 0),
            Marker::Array32 => (self.be(4)?, 0),
            Marker::FixMap(n) => (2 * n as u64, 0),
            Marker::Map16 => (2 * self.be(2)?, 0),
            Marker::Map32 => (2 * self.be(4)?, 0),
            Marker::FixExt1 => (0, 2),
            Marker::FixExt2 => (0, 3),
            Marker::FixExt4 => (0, 5),
            Marker::FixExt8 => (0, 9),
            Marker::FixExt16 => (0, 17),
            Marker::Ext8 => (0, self.be(1)? + 1),
            Marker::Ext16 => (0, self.be(2)? + 1),
            Marker::Ext32 => (0, self.be(4)? + 1),
            Marker::Reserved => return Err(self.error("reserved msgpack marker 0xc1")),
        };
        let bytes = self.bounded(bytes, 1)?;
        self.take(bytes)?;
        for _ in 0..self.bounded(items, 1)? {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        if matches!(
            self.peek(),
            Some(Marker::FixMap(_) | Marker::Map16 | Marker::Map32)
        ) {
            return Err(self.error(
                "a map-encoded snapshot (rmp-serde to_vec_named); agents write the positional form",
            ));
        }
        let len = self.array_len()?;
        if !(5..=7).contains(&len) {
            return Err(self.error(format!(
                "a snapshot has 5 to 7 fields (V1 or V2), this one {len}"
            )));
        }
        let systemtime = self.time()?;
        // V2 has a duration (an array) where V1 has its metadata (a map);
        // V1 is 5 fields (6 with gauge histograms), V2 is 6 (or 7).
        let v2 = matches!(
            self.peek(),
            Some(Marker::FixArray(_) | Marker::Array16 | Marker::Array32)
        );
        let mut rest = len - 1;
        let mut duration = Duration::ZERO;
        if v2 {
            duration = self
                .time()?
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            rest -= 1;
        }
        if rest < 4 {
            return Err(self.error("snapshot ends before its histograms"));
        }
        let metadata = self.metadata()?;
        let mut metrics = Vec::new();
        for kind in [Kind::Counter, Kind::Gauge, Kind::Histogram] {
            let n = self.array_len()?;
            metrics.reserve(n);
            for _ in 0..n {
                metrics.push(self.metric(kind)?);
            }
        }
        // Gauge histograms (a state, not counts) are not relayed.
        for _ in 4..rest {
            self.skip(0)?;
        }
        Ok(Snapshot {
            stamp: Stamp {
                systemtime,
                duration,
            },
            metadata,
            metrics,
        })
    }

    /// The snapshot's metadata map (who wrote it); entries whose key or
    /// value is not a string are skipped.
    fn metadata(&mut self) -> Result<Vec<(String, String)>> {
        let n = self.map_len()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let is_str = |m: Option<Marker>| {
                matches!(
                    m,
                    Some(Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32)
                )
            };
            if !is_str(self.peek()) {
                self.skip(0)?;
                self.skip(0)?;
                continue;
            }
            let k = self.str()?;
            if !is_str(self.peek()) {
                self.skip(0)?;
                continue;
            }
            out.push((k.to_string(), self.str()?.to_string()));
        }
        Ok(out)
    }

    /// `SystemTime` or `Duration` as serde writes them: `[secs, nanos]`.
    fn time(&mut self) -> Result<SystemTime> {
        if self.array_len()? != 2 {
            return Err(self.error("a time is [secs, nanos]"));
        }
        let secs = self.u64()?;
        let nanos = self.u64()?;
        if nanos >= 1_000_000_000 {
            return Err(self.error(format!("{nanos} nanoseconds is not below one second")));
        }
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos as u32))
            .ok_or_else(|| self.error(format!("time {secs}s is out of range")))
    }

    fn metric(&mut self, kind: Kind) -> Result<Metric> {
        let len = self.array_len()?;
        if !(3..=4).contains(&len) {
            return Err(self.error(format!(
                "a metric is [name, value, metadata], got {len} fields"
            )));
        }
        let id = self.str()?;
        let value = match kind {
            Kind::Counter => Value::Counter(self.u64()?),
            Kind::Gauge => Value::Gauge(self.i64()?),
            Kind::Histogram => self.histogram()?,
        };
        let mut name = None;
        let mut unit = None;
        let mut labels = Vec::new();
        for _ in 0..self.map_len()? {
            let k = self.str()?;
            let v = self.str()?;
            match k {
                "metric" => name = Some(v),
                "unit" => unit = Some(v),
                _ if NOT_LABELS.contains(&k) => {}
                _ => labels.push((k.to_string(), v.to_string())),
            }
        }
        if len == 4 {
            self.skip(0)?; // the acquisition window
        }
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        let name = name.unwrap_or_else(|| id.split('{').next().unwrap_or(id));
        if name.is_empty() {
            return Err(self.error("a metric without a name"));
        }
        Ok(Metric {
            id: id.to_string(),
            name: name.to_string(),
            labels,
            unit: unit.map(str::to_string),
            value,
        })
    }

    /// `[config, buckets]`, config `[max, grouping_power, max_value_power, …]`.
    fn histogram(&mut self) -> Result<Value> {
        if self.array_len()? != 2 {
            return Err(self.error("a histogram is [config, buckets]"));
        }
        let fields = self.array_len()?;
        if fields < 3 {
            return Err(self.error("histogram config has fewer than 3 fields"));
        }
        self.u64()?; // max
        let gp = self.u64()?;
        let mvp = self.u64()?;
        for _ in 3..fields {
            self.skip(0)?;
        }
        let layout = u8::try_from(gp)
            .ok()
            .zip(u8::try_from(mvp).ok())
            .and_then(|(g, m)| Layout::new(g, m))
            .ok_or_else(|| {
                self.error(format!(
                    "histogram grouping power {gp} / max value power {mvp} is not a valid layout"
                ))
            })?;
        let n = self.array_len()?;
        if n != layout.buckets() {
            return Err(self.error(format!(
                "histogram has {n} buckets, its config says {}",
                layout.buckets()
            )));
        }
        let mut buckets = Vec::with_capacity(n);
        for _ in 0..n {
            buckets.push(self.u64()?);
        }
        Ok(Value::Histogram { layout, buckets })
    }
}

#[cfg(test)]
mod tests;
