use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::*;
use crate::snapshot::{Encoder, Stamp};

crate::family! {
    static T_OPS: Counter {
        name: "test_decode_ops",
        unit: Count,
        labels: ["op"],
        sampler: "test",
        source: "test",
        help: "x",
    }
}
crate::family! {
    static T_LAT: Histogram {
        name: "test_decode_latency",
        unit: Nanoseconds,
        labels: ["op"],
        sampler: "test",
        source: "test",
        help: "x",
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A snapshot as a Rezolus agent writes it: metriken-exposition types,
/// rmp-serde positional encoding, grouping power 7.
fn rezolus(v1: bool) -> Vec<u8> {
    use metriken_exposition as me;
    let mut h = histogram::Histogram::new(7, 64).unwrap();
    h.add(1_000_000, 1000).unwrap();
    h.add(100_000_000, 10).unwrap();
    let counters = vec![me::Counter::new(
        "cpu_usage/user/0".into(),
        5_000_000_000,
        meta(&[
            ("metric", "cpu_usage"),
            ("state", "user"),
            ("cpu", "0"),
            ("unit", "nanoseconds"),
        ]),
    )];
    let gauges = vec![me::Gauge::new("memory_free".into(), -3, meta(&[]))];
    let histograms = vec![me::Histogram::new(
        "syscall_latency".into(),
        h,
        meta(&[
            ("metric", "syscall_latency"),
            ("op", "read"),
            ("grouping_power", "7"),
        ]),
    )];
    let metadata = meta(&[("source", "rezolus")]);
    if v1 {
        rmp_serde::to_vec(&me::SnapshotV1 {
            systemtime: at(1_700_000_000),
            metadata,
            counters,
            gauges,
            histograms,
            gauge_histograms: Vec::new(),
        })
        .unwrap()
    } else {
        rmp_serde::to_vec(&me::SnapshotV2 {
            systemtime: at(1_700_000_000),
            duration: Duration::from_millis(3),
            metadata,
            counters,
            gauges,
            histograms,
            gauge_histograms: Vec::new(),
        })
        .unwrap()
    }
}

#[test]
fn decodes_rezolus_v1_and_v2() {
    for v1 in [true, false] {
        let s = decode(&rezolus(v1)).unwrap_or_else(|e| panic!("v1={v1}: {e}"));
        assert_eq!(s.stamp.systemtime, at(1_700_000_000));
        assert_eq!(s.metadata, [("source".to_string(), "rezolus".to_string())]);
        assert_eq!(s.metrics.len(), 3);
        let c = &s.metrics[0];
        assert_eq!(c.name, "cpu_usage");
        assert_eq!(c.unit.as_deref(), Some("nanoseconds"));
        assert_eq!(
            c.labels,
            vec![("cpu".into(), "0".into()), ("state".into(), "user".into())]
        );
        assert!(matches!(c.value, Value::Counter(5_000_000_000)));
        assert_eq!(s.metrics[1].name, "memory_free");
        assert!(matches!(s.metrics[1].value, Value::Gauge(-3)));
        let h = &s.metrics[2];
        assert_eq!(h.labels, vec![("op".into(), "read".into())]);
        let Value::Histogram { layout, buckets } = &h.value else {
            panic!("not a histogram")
        };
        assert_eq!(*layout, Layout::new(7, 64).unwrap());
        assert_eq!(buckets.iter().sum::<u64>(), 1010);
    }
}

#[test]
fn decodes_our_own_snapshot() {
    let ops = T_OPS.series(&["read"]);
    ops.set_counter(7);
    let lat = T_LAT.series(&["read"]);
    let mut b = vec![0u64; crate::histogram::BUCKETS];
    b[crate::histogram::index(5000)] = 3;
    lat.set_histogram(&b, 15000);
    let mut bytes = Vec::new();
    Encoder::default().msgpack(
        Stamp {
            systemtime: at(1_800_000_000),
            duration: Duration::from_micros(400),
        },
        &mut bytes,
    );
    let s = decode(&bytes).unwrap();
    assert_eq!(s.stamp.systemtime, at(1_800_000_000));
    let ops = s
        .metrics
        .iter()
        .find(|m| m.name == "test_decode_ops")
        .unwrap();
    assert_eq!(ops.labels, vec![("op".into(), "read".into())]);
    assert!(matches!(ops.value, Value::Counter(7)));
    let lat = s
        .metrics
        .iter()
        .find(|m| m.name == "test_decode_latency")
        .unwrap();
    assert_eq!(lat.unit.as_deref(), Some("nanoseconds"));
    let Value::Histogram { buckets, .. } = &lat.value else {
        panic!("not a histogram")
    };
    assert_eq!(buckets[crate::histogram::index(5000)], 3);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = rezolus(false);
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
    let mut long = bytes.clone();
    long.push(0xc0);
    assert!(decode(&long).unwrap_err().what.contains("trailing"));
}

#[test]
fn absurd_lengths_fail_before_allocating() {
    // array32 claiming 4 billion counters, then nothing.
    let mut b = vec![0x96, 0x92, 0x01, 0x00, 0x92, 0x00, 0x00, 0x80];
    b.extend([0xdd, 0xff, 0xff, 0xff, 0xff]);
    let e = decode(&b).unwrap_err();
    assert!(e.what.contains("exceeds"), "{e}");
    // str32 of 4 GB as a snapshot metadata key.
    let b = [
        0x96, 0x92, 0x01, 0x00, 0x92, 0x00, 0x00, 0x81, 0xdb, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(decode(&b).is_err());
}

#[test]
fn deep_nesting_is_refused() {
    // The value of a snapshot metadata entry `k`: [[[[…
    let mut b = vec![0x96, 0x92, 0x01, 0x00, 0x92, 0x00, 0x00, 0x81, 0xa1, b'k'];
    b.extend(std::iter::repeat_n(0x91, 100_000));
    b.push(0xc0);
    let e = decode(&b).unwrap_err();
    assert!(e.what.contains("too deep"), "{e}");
}

#[test]
fn wrong_shapes_are_named() {
    let e = decode(b"<html>not found</html>").unwrap_err();
    assert!(e.what.contains("expected an array"), "{e}");
    let named = rmp_serde::to_vec_named(&metriken_exposition::SnapshotV2 {
        systemtime: at(1),
        duration: Duration::ZERO,
        metadata: HashMap::new(),
        counters: vec![],
        gauges: vec![],
        histograms: vec![],
        gauge_histograms: vec![],
    })
    .unwrap();
    assert!(decode(&named).unwrap_err().what.contains("map-encoded"));
    // A histogram whose bucket count disagrees with its config.
    let mut bytes = rezolus(false);
    let pos = bytes
        .windows(3)
        .position(|w| w == [0xdc, 0x1d, 0x00]) // array16 of 7424 buckets (gp 7)
        .expect("bucket array header");
    bytes[pos + 1] = 0x1c;
    assert!(decode(&bytes).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random bytes: an error or a snapshot, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    /// A valid snapshot with bytes flipped, inserted or cut out anywhere.
    #[test]
    fn mutated_snapshots_never_panic(
        v1 in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = rezolus(v1);
        for (at, byte, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        let _ = decode(&bytes);
    }
}
