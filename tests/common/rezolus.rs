//! A recording in Rezolus's own layout (5.11: opaque numeric column
//! names, `source`/`endpoint` in the column metadata, `:window_*` and
//! `:wall_offset` sidecars, a gauge histogram), written with arrow because
//! Rezolus's sample files are not ours to commit.

use std::path::Path;

/// Rows written, one a second.
pub const ROWS: u64 = 30;
/// The first row's time (ns since the epoch).
pub const T0: u64 = 1_796_000_000_000_000_000;

/// Writes `path`: each second, CPU 0 busy 0.5 s and CPU 1 0.25 s
/// (`cpu_usage{id, state="user"}`), 100 run-queue waits of 1 µs, 8 GiB
/// of `memory_available`.
pub fn write(path: &Path) {
    use arrow_array::builder::{Int64Builder, ListBuilder, UInt64Builder};
    use arrow_array::{ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use std::collections::HashMap;
    use std::sync::Arc;

    let md = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let origin = [("source", "rezolus"), ("endpoint", "127.0.0.1:4241")];
    let counter = |name: &str, cpu: &str| {
        let mut m = md(&[
            ("metric", "cpu_usage"),
            ("metric_type", "counter"),
            ("unit", "nanoseconds"),
            ("id", cpu),
            ("state", "user"),
        ]);
        m.extend(md(&origin));
        Field::new(name, DataType::UInt64, true).with_metadata(m)
    };
    let list = || DataType::List(Arc::new(Field::new("item", DataType::UInt64, true)));
    let hist_md = |metric_type: &str| {
        md(&[
            ("metric", "scheduler_runqueue_latency"),
            ("metric_type", metric_type),
            ("unit", "nanoseconds"),
            ("grouping_power", "3"),
            ("max_value_power", "64"),
        ])
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("timestamp", DataType::UInt64, false)
            .with_metadata(md(&[("metric_type", "timestamp"), ("unit", "nanoseconds")])),
        Field::new("duration", DataType::UInt64, true),
        counter("181", "0"),
        counter("182", "1"),
        Field::new("24x0", DataType::Int64, true).with_metadata(md(&[
            ("metric", "memory_available"),
            ("metric_type", "gauge"),
            ("unit", "bytes"),
        ])),
        Field::new("215:buckets", list(), true).with_metadata(hist_md("histogram")),
        Field::new("216:buckets", list(), true).with_metadata(hist_md("gauge_histogram")),
        Field::new("181:window_begin", DataType::Int64, true),
        Field::new(":wall_offset", DataType::Int64, true),
    ]));
    // Each second: CPU 0 busy 0.5 s, CPU 1 0.25 s; 100 run-queue waits of
    // 1 µs; 8 GiB available.
    let mut one_us = histogram::Histogram::new(3, 64).unwrap();
    one_us.increment(1000).unwrap();
    let buckets: Vec<u64> = one_us.as_slice().to_vec();
    let (mut ts, mut c0, mut c1, mut g) = (
        UInt64Builder::new(),
        UInt64Builder::new(),
        UInt64Builder::new(),
        Int64Builder::new(),
    );
    let (mut dur, mut h, mut gh, mut wb, mut wo) = (
        UInt64Builder::new(),
        ListBuilder::new(UInt64Builder::new()),
        ListBuilder::new(UInt64Builder::new()),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    for i in 0..ROWS {
        ts.append_value(T0 + i * 1_000_000_000);
        dur.append_value(1_000_000);
        c0.append_value(i * 500_000_000);
        c1.append_value(i * 250_000_000);
        g.append_value(8 << 30);
        h.values()
            .append_slice(&buckets.iter().map(|b| b * 100 * i).collect::<Vec<_>>());
        h.append(true);
        gh.values().append_slice(&buckets);
        gh.append(true);
        wb.append_value(0);
        wo.append_value(0);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(dur.finish()),
        Arc::new(c0.finish()),
        Arc::new(c1.finish()),
        Arc::new(g.finish()),
        Arc::new(h.finish()),
        Arc::new(gh.finish()),
        Arc::new(wb.finish()),
        Arc::new(wo.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let kv = |k: &str, v: &str| parquet::file::metadata::KeyValue::new(k.into(), v.to_string());
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            kv("source", "rezolus"),
            kv("version", "5.11.0"),
            kv("sampling_interval_ms", "1000"),
            kv(
                "descriptions",
                r#"{"cpu_usage":"The amount of CPU time spent busy"}"#,
            ),
        ]))
        .build();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}
