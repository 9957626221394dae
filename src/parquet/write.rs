//! The writer: snapshots to one parquet file, in the layout metriken-exposition writes
//! and Rezolus's viewer (metriken-query's `ParquetReader`), pandas, polars
//! and DuckDB read: a `timestamp` column (UInt64, ns since the epoch), a
//! `duration` column (UInt64, ns the refresh took), then one column per
//! series named by its snapshot id — counters `UInt64`, gauges `Int64`,
//! histograms `<id>:buckets` as `List<UInt64>` — each nullable, with field
//! metadata `metric`, `unit`, `metric_type`, the labels, and for histograms
//! `grouping_power` and `max_value_power`. File metadata carries
//! `sampling_interval_ms`, `source`, `version` and what the caller adds.
//!
//! Parquet wants its schema before the first row, and series appear and
//! vanish during a recording, so the snapshots are read twice: once for the
//! union of series (and each histogram's layout, which then never changes
//! within the file), once to write rows. The file is written beside its
//! final name, fsync'd and renamed: a reader never sees a torn file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use arrow_array::builder::{Int64Builder, ListBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::histogram::Layout;
use crate::snapshot::{Snapshot, Value};

/// Rows per record batch handed to the writer (memory while writing).
const BATCH_ROWS: usize = 256;
/// Rows per row group, as Rezolus writes them: its viewer decodes only the
/// groups a zoomed-in window overlaps (30 min at 1 s).
const ROW_GROUP_ROWS: usize = 1800;

/// What a written file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub columns: usize,
    pub bytes: u64,
    /// First and last timestamps (ns since the epoch).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Histogram values left out because their layout differed from the
    /// one the column was created with.
    pub layout_mismatches: u64,
}

/// Visits every snapshot of a recording, in order; called twice.
pub trait Snapshots {
    fn each(&mut self, f: &mut dyn FnMut(Snapshot)) -> anyhow::Result<()>;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(Layout),
}

struct Column {
    kind: Kind,
    metadata: HashMap<String, String>,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes the snapshots of `source` to `out` (replacing it). `metadata` is
/// added to the file metadata after the snapshots' own (`source`,
/// `version`), so the caller's keys win.
pub fn write(
    out: &Path,
    metadata: &[(String, String)],
    source: &mut dyn Snapshots,
) -> anyhow::Result<Summary> {
    // Pass 1: the union of series, first metadata and layout winning.
    let mut columns: BTreeMap<String, Column> = BTreeMap::new();
    let mut file_meta: BTreeMap<String, String> = BTreeMap::new();
    let mut rows = 0u64;
    let (mut first_ns, mut last_ns) = (u64::MAX, 0u64);
    source.each(&mut |s| {
        rows += 1;
        let ts = unix_ns(s.stamp.systemtime);
        first_ns = first_ns.min(ts);
        last_ns = last_ns.max(ts);
        for (k, v) in &s.metadata {
            file_meta.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for m in s.metrics {
            if columns.contains_key(&m.id) {
                continue;
            }
            let kind = match &m.value {
                Value::Counter(_) => Kind::Counter,
                Value::Gauge(_) => Kind::Gauge,
                Value::Histogram { layout, .. } => Kind::Histogram(*layout),
            };
            let mut md: HashMap<String, String> = m.labels.into_iter().collect();
            md.insert("metric".into(), m.name);
            if let Some(u) = m.unit {
                md.insert("unit".into(), u);
            }
            let t = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(l) => {
                    md.insert("grouping_power".into(), l.grouping_power().to_string());
                    md.insert("max_value_power".into(), l.max_value_power().to_string());
                    "histogram"
                }
            };
            md.insert("metric_type".into(), t.into());
            columns.insert(m.id, Column { kind, metadata: md });
        }
    })?;
    if rows == 0 {
        anyhow::bail!("no snapshot to write");
    }
    for (k, v) in metadata {
        file_meta.insert(k.clone(), v.clone());
    }
    // Rezolus's viewer takes a recording's time span and version per
    // source from here.
    let source_name = file_meta
        .get("source")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let mut per_source = serde_json::json!({
        "first_sample_ns": first_ns,
        "last_sample_ns": last_ns,
    });
    if let Some(v) = file_meta.get("version") {
        per_source["version"] = serde_json::Value::String(v.clone());
    }
    file_meta
        .entry("per_source_metadata".into())
        .or_insert_with(|| serde_json::json!({ source_name: per_source }).to_string());

    let mut fields = vec![
        Field::new("timestamp", DataType::UInt64, false).with_metadata(HashMap::from([
            ("metric_type".into(), "timestamp".into()),
            ("unit".into(), "nanoseconds".into()),
        ])),
        Field::new("duration", DataType::UInt64, true).with_metadata(HashMap::from([
            ("metric_type".into(), "duration".into()),
            ("unit".into(), "nanoseconds".into()),
        ])),
    ];
    // Counters, then gauges, then histograms, each sorted by id, as
    // metriken-exposition orders them.
    let ordered: Vec<(&String, &Column)> = [0, 1, 2]
        .into_iter()
        .flat_map(|rank| {
            columns.iter().filter(move |(_, c)| {
                rank == match c.kind {
                    Kind::Counter => 0,
                    Kind::Gauge => 1,
                    Kind::Histogram(_) => 2,
                }
            })
        })
        .collect();
    for (id, c) in &ordered {
        let (name, ty) = match c.kind {
            Kind::Counter => ((*id).clone(), DataType::UInt64),
            Kind::Gauge => ((*id).clone(), DataType::Int64),
            Kind::Histogram(_) => (
                format!("{id}:buckets"),
                DataType::new_list(DataType::UInt64, true),
            ),
        };
        fields.push(Field::new(name, ty, true).with_metadata(c.metadata.clone()));
    }
    let schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(
            file_meta
                .into_iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value: Some(value),
                })
                .collect(),
        ))
        .build();

    let tmp = temp_path(out);
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> anyhow::Result<Summary> {
        let mut writer = ArrowWriter::try_new(
            BufWriter::new(file.try_clone()?),
            Arc::clone(&schema),
            Some(props),
        )?;
        // Pass 2: rows, in batches.
        let index: HashMap<&str, usize> = ordered
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.as_str(), i))
            .collect();
        let mut batch = Batch::new(&ordered);
        let mut summary = Summary {
            columns: schema.fields().len(),
            first_ns: u64::MAX,
            ..Summary::default()
        };
        let mut error = None;
        source.each(&mut |s| {
            if error.is_some() {
                return;
            }
            let ts = unix_ns(s.stamp.systemtime);
            summary.first_ns = summary.first_ns.min(ts);
            summary.last_ns = summary.last_ns.max(ts);
            summary.rows += 1;
            summary.layout_mismatches += batch.push(ts, s, &index, &ordered);
            if batch.rows >= BATCH_ROWS {
                if let Err(e) = batch.flush(&schema, &mut writer) {
                    error = Some(e);
                }
            }
        })?;
        if let Some(e) = error {
            return Err(e);
        }
        batch.flush(&schema, &mut writer)?;
        let mut inner = writer.into_inner()?;
        inner.flush()?;
        drop(inner);
        file.sync_all()?;
        Ok(summary)
    })();
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("cannot write {}", out.display())));
        }
    };
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    summary.bytes = std::fs::metadata(out).map_or(0, |m| m.len());
    Ok(summary)
}

/// `dir/.name.tmp`: beside the final file, so the rename is atomic.
fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "recording".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.tmp"))
}

/// Column builders for up to `BATCH_ROWS` rows.
struct Batch {
    rows: usize,
    timestamp: UInt64Builder,
    duration: UInt64Builder,
    columns: Vec<Builder>,
}

enum Builder {
    Counter(UInt64Builder),
    Gauge(Int64Builder),
    Histogram(Layout, ListBuilder<UInt64Builder>),
}

impl Batch {
    fn new(ordered: &[(&String, &Column)]) -> Batch {
        Batch {
            rows: 0,
            timestamp: UInt64Builder::new(),
            duration: UInt64Builder::new(),
            columns: ordered
                .iter()
                .map(|(_, c)| match c.kind {
                    Kind::Counter => Builder::Counter(UInt64Builder::new()),
                    Kind::Gauge => Builder::Gauge(Int64Builder::new()),
                    Kind::Histogram(l) => {
                        Builder::Histogram(l, ListBuilder::new(UInt64Builder::new()))
                    }
                })
                .collect(),
        }
    }

    /// Appends one row; a series the snapshot lacks is null. Returns the
    /// histogram values dropped for a changed layout.
    fn push(
        &mut self,
        ts: u64,
        s: Snapshot,
        index: &HashMap<&str, usize>,
        ordered: &[(&String, &Column)],
    ) -> u64 {
        let mut values: Vec<Option<Value>> = (0..ordered.len()).map(|_| None).collect();
        for m in s.metrics {
            if let Some(&i) = index.get(m.id.as_str()) {
                values[i] = Some(m.value);
            }
        }
        self.timestamp.append_value(ts);
        self.duration
            .append_value(s.stamp.duration.as_nanos() as u64);
        let mut mismatches = 0;
        for (b, v) in self.columns.iter_mut().zip(values) {
            match (b, v) {
                (Builder::Counter(b), Some(Value::Counter(v))) => b.append_value(v),
                (Builder::Gauge(b), Some(Value::Gauge(v))) => b.append_value(v),
                (Builder::Histogram(l, b), Some(Value::Histogram { layout, buckets })) => {
                    if layout == *l {
                        b.values().append_slice(&buckets);
                        b.append(true);
                    } else {
                        mismatches += 1;
                        b.append_null();
                    }
                }
                (Builder::Counter(b), _) => b.append_null(),
                (Builder::Gauge(b), _) => b.append_null(),
                (Builder::Histogram(_, b), _) => b.append_null(),
            }
        }
        self.rows += 1;
        mismatches
    }

    fn flush<W: Write + Send>(
        &mut self,
        schema: &Arc<Schema>,
        writer: &mut ArrowWriter<W>,
    ) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.timestamp.finish()),
            Arc::new(self.duration.finish()),
        ];
        for b in &mut self.columns {
            arrays.push(match b {
                Builder::Counter(b) => Arc::new(b.finish()),
                Builder::Gauge(b) => Arc::new(b.finish()),
                Builder::Histogram(_, b) => Arc::new(b.finish()),
            });
        }
        let batch = RecordBatch::try_new(Arc::clone(schema), arrays)?;
        writer.write(&batch)?;
        self.rows = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow_array::{Array, ListArray, UInt64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::snapshot::{Metric, Stamp};

    struct Fixed(Vec<Vec<Metric>>);

    fn metric(id: &str, value: Value) -> Metric {
        Metric {
            id: id.into(),
            name: id.split('{').next().unwrap().into(),
            labels: vec![("op".into(), "read".into())],
            unit: Some("count".into()),
            value,
        }
    }

    fn hist(gp: u8, count: u64) -> Value {
        let layout = Layout::new(gp, 10).unwrap();
        let mut buckets = vec![0; layout.buckets()];
        buckets[1] = count;
        Value::Histogram { layout, buckets }
    }

    impl Snapshots for Fixed {
        fn each(&mut self, f: &mut dyn FnMut(Snapshot)) -> anyhow::Result<()> {
            for (i, metrics) in self.0.iter().enumerate() {
                let metrics = metrics
                    .iter()
                    .map(|m| Metric {
                        id: m.id.clone(),
                        name: m.name.clone(),
                        labels: m.labels.clone(),
                        unit: m.unit.clone(),
                        value: match &m.value {
                            Value::Counter(v) => Value::Counter(*v),
                            Value::Gauge(v) => Value::Gauge(*v),
                            Value::Histogram { layout, buckets } => Value::Histogram {
                                layout: *layout,
                                buckets: buckets.clone(),
                            },
                        },
                    })
                    .collect();
                f(Snapshot {
                    stamp: Stamp {
                        systemtime: SystemTime::UNIX_EPOCH + Duration::from_secs(100 + i as u64),
                        duration: Duration::from_micros(5),
                    },
                    metadata: vec![("source".into(), "test".into())],
                    metrics,
                });
            }
            Ok(())
        }
    }

    /// A series that appears late is null before; one that vanishes is
    /// null after; a histogram whose layout changes keeps its first layout
    /// and the odd value is null; file and field metadata are written.
    #[test]
    fn union_schema_nulls_and_a_fixed_histogram_layout() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t.parquet");
        let mut source = Fixed(vec![
            vec![metric("a", Value::Counter(1)), metric("h", hist(3, 7))],
            vec![
                metric("a", Value::Counter(2)),
                metric("b", Value::Gauge(-4)),
                metric("h", hist(2, 9)),
            ],
            vec![metric("b", Value::Gauge(5)), metric("h", hist(3, 8))],
        ]);
        let meta = [("sampling_interval_ms".to_string(), "1000".to_string())];
        let summary = write(&out, &meta, &mut source).unwrap();
        assert_eq!((summary.rows, summary.columns), (3, 5));
        assert_eq!(summary.layout_mismatches, 1);
        assert!(!dir.path().join(".t.parquet.tmp").exists());

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&out).unwrap()).unwrap();
        let kv: HashMap<String, String> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(kv["sampling_interval_ms"], "1000");
        assert_eq!(kv["source"], "test");
        assert!(kv["per_source_metadata"].contains("\"first_sample_ns\":100000000000"));
        let schema = reader.schema().clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["timestamp", "duration", "a", "b", "h:buckets"]);
        let h = schema.field_with_name("h:buckets").unwrap().metadata();
        assert_eq!(
            (h["grouping_power"].as_str(), h["max_value_power"].as_str()),
            ("3", "10")
        );
        assert_eq!(h["metric_type"], "histogram");
        assert_eq!(
            schema.field_with_name("a").unwrap().metadata()["op"],
            "read"
        );

        let batch = reader.build().unwrap().next().unwrap().unwrap();
        let a = batch
            .column(2)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), [Some(1), Some(2), None]);
        let b = batch
            .column(3)
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        assert_eq!(b.iter().collect::<Vec<_>>(), [None, Some(-4), Some(5)]);
        let h = batch
            .column(4)
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        assert!(h.is_valid(0) && h.is_null(1) && h.is_valid(2));
        assert_eq!(h.value(0).len(), Layout::new(3, 10).unwrap().buckets());
    }

    #[test]
    fn nothing_to_write_is_an_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("empty.parquet");
        assert!(write(&out, &[], &mut Fixed(Vec::new())).is_err());
        assert!(!out.exists());
    }
}
