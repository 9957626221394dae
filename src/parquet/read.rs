//! Reading a recording: ours (`sonde record`, hindsight dumps) or
//! Rezolus's. Opening reads the footer and the timestamp column only; a
//! query reads the columns it needs, and of those only the row groups
//! (and rows) its steps need, so a day at 1 s opens in milliseconds and
//! memory follows the query, not the file.
//!
//! What a column is comes from its metadata, never its name (Rezolus's
//! column names changed between versions): `metric` names it, the Arrow
//! type gives its kind (UInt64 counter, Int64 gauge, List<UInt64> an H2
//! histogram whose `grouping_power` / `max_value_power` give its layout),
//! every other key is a label. Rezolus's sidecar columns (`:window_*`,
//! `:wall_offset`) and gauge histograms (states, not counts) are left out.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::Array;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::ProjectionMask;

use crate::histogram::Layout;
use crate::query::{Buckets, Kind, SeriesInfo, Source};

/// Metadata keys that describe a column rather than label it.
const NOT_LABELS: [&str; 5] = [
    "metric",
    "metric_type",
    "unit",
    "grouping_power",
    "max_value_power",
];

/// An open recording.
pub struct Recording {
    path: PathBuf,
    file: Positional,
    meta: ArrowReaderMetadata,
    series: Vec<SeriesInfo>,
    /// The Arrow (root) column of each series.
    columns: Vec<usize>,
    ts: Vec<i64>,
    /// First row of each row group, and the total after the last.
    group_starts: Vec<usize>,
    metadata: Vec<(String, String)>,
    interval: Option<Duration>,
    /// Columns left out, with why.
    skipped: Vec<(String, String)>,
}

impl Recording {
    /// Opens `path`; a missing, damaged or truncated file, or a parquet
    /// file that is not a recording, is an error that says which.
    pub fn open(path: &Path) -> anyhow::Result<Recording> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such file", path.display()),
            _ => anyhow::anyhow!("cannot open {}: {e}", path.display()),
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a readable parquet file ({len} bytes; truncated or not parquet?): {e}",
                path.display()
            )
        })?;
        let schema = meta.schema().clone();
        let ts_col = schema.index_of("timestamp").map_err(|_| {
            anyhow::anyhow!(
                "{} is parquet but not a recording: it has no `timestamp` column",
                path.display()
            )
        })?;
        let mut series = Vec::new();
        let mut columns = Vec::new();
        let mut skipped = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name();
            if i == ts_col || name == "duration" {
                continue;
            }
            if name.contains(":window_") || name.ends_with(":wall_offset") {
                skipped.push((name.clone(), "a sidecar column".into()));
                continue;
            }
            let md = field.metadata();
            let metric = md
                .get("metric")
                .cloned()
                .unwrap_or_else(|| name.trim_end_matches(":buckets").to_string());
            let kind = match field.data_type() {
                DataType::UInt64 => Kind::Counter,
                DataType::Int64 => Kind::Gauge,
                DataType::List(inner) if inner.data_type() == &DataType::UInt64 => {
                    if md
                        .get("metric_type")
                        .is_some_and(|t| t == "gauge_histogram")
                    {
                        skipped.push((name.clone(), "a gauge histogram (a state)".into()));
                        continue;
                    }
                    let power = |k: &str, default: u8| {
                        md.get(k).map_or(Some(default), |v| v.parse::<u8>().ok())
                    };
                    match power("grouping_power", 3)
                        .zip(power("max_value_power", 64))
                        .and_then(|(g, m)| Layout::new(g, m))
                    {
                        Some(l) => Kind::Histogram(l),
                        None => {
                            skipped.push((name.clone(), "an unknown histogram layout".into()));
                            continue;
                        }
                    }
                }
                other => {
                    skipped.push((name.clone(), format!("of type {other}")));
                    continue;
                }
            };
            let mut labels: Vec<(String, String)> = md
                .iter()
                .filter(|(k, _)| !NOT_LABELS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            series.push(SeriesInfo {
                metric,
                labels,
                kind,
                unit: md.get("unit").cloned(),
            });
            columns.push(i);
        }
        let pq = meta.metadata();
        let mut group_starts = vec![0usize];
        for g in pq.row_groups() {
            let last = *group_starts.last().expect("one");
            group_starts.push(last + g.num_rows() as usize);
        }
        let metadata: Vec<(String, String)> = pq
            .file_metadata()
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let interval = metadata
            .iter()
            .find(|(k, _)| k == "sampling_interval_ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let mut r = Recording {
            path: path.to_path_buf(),
            file: Positional(Arc::new(file)),
            meta,
            series,
            columns,
            ts: Vec::new(),
            group_starts,
            metadata,
            interval,
            skipped,
        };
        r.ts = r.read_timestamps(ts_col)?;
        if r.ts.windows(2).any(|w| w[1] < w[0]) {
            anyhow::bail!(
                "{}: its timestamps are not in time order (a combined file?)",
                path.display()
            );
        }
        Ok(r)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's key/value metadata (`source`, `version`,
    /// `sampling_interval_ms`, `descriptions`, `systeminfo`, …).
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Columns left out, with why.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    pub fn row_groups(&self) -> usize {
        self.group_starts.len() - 1
    }

    fn builder(&self) -> anyhow::Result<ParquetRecordBatchReaderBuilder<Positional>> {
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.file.clone(),
            self.meta.clone(),
        ))
    }

    fn mask(&self, column: usize) -> ProjectionMask {
        ProjectionMask::roots(
            self.meta.metadata().file_metadata().schema_descr(),
            [column],
        )
    }

    fn read_timestamps(&self, column: usize) -> anyhow::Result<Vec<i64>> {
        let reader = self
            .builder()?
            .with_projection(self.mask(column))
            .with_batch_size(64 << 10)
            .build()?;
        let mut out = Vec::with_capacity(*self.group_starts.last().unwrap_or(&0));
        for batch in reader {
            let batch = batch
                .with_context(|| format!("{}: cannot read timestamps", self.path.display()))?;
            let col = batch.column(0);
            let v = col
                .as_primitive_opt::<UInt64Type>()
                .context("the timestamp column is not UInt64")?;
            out.extend(
                v.iter()
                    .map(|t| crate::query::to_millis(t.unwrap_or(0) as i64)),
            );
        }
        Ok(out)
    }

    /// Per row group holding some of `rows` (sorted): the group and the
    /// selection of those rows within it.
    fn plan(&self, rows: &[usize]) -> Vec<(usize, RowSelection)> {
        let mut groups: Vec<usize> = Vec::new();
        for &r in rows {
            let g = self.group_starts.partition_point(|&s| s <= r) - 1;
            if groups.last() != Some(&g) {
                groups.push(g);
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        let mut ri = 0;
        for &g in &groups {
            let mut selectors = Vec::new();
            let (start, end) = (self.group_starts[g], self.group_starts[g + 1]);
            let mut at = start;
            while ri < rows.len() && rows[ri] < end {
                let r = rows[ri];
                if r > at {
                    selectors.push(RowSelector::skip(r - at));
                }
                // A run of consecutive rows is one selector.
                let mut run = 1;
                while ri + run < rows.len() && rows[ri + run] == r + run && r + run < end {
                    run += 1;
                }
                selectors.push(RowSelector::select(run));
                at = r + run;
                ri += run;
            }
            if end > at {
                selectors.push(RowSelector::skip(end - at));
            }
            out.push((g, RowSelection::from(selectors)));
        }
        out
    }

    /// The Arrow arrays of `column` at `rows`, in order.
    fn read(
        &self,
        column: usize,
        rows: &[usize],
        mut f: impl FnMut(&dyn Array) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // One row group at a time: a reader given many groups of a list
        // column held hundreds of MB of decoded pages (a day's histogram at
        // 2,000 rows: 563 MB); one group's pages are a few MB.
        for (group, selection) in self.plan(rows) {
            let reader = self
                .builder()?
                .with_projection(self.mask(column))
                .with_row_groups(vec![group])
                .with_row_selection(selection)
                .with_batch_size(2048)
                .build()?;
            for batch in reader {
                let batch = batch
                    .with_context(|| format!("{}: cannot read a column", self.path.display()))?;
                f(batch.column(0).as_ref())?;
            }
        }
        Ok(())
    }
}

impl Source for Recording {
    fn series(&self) -> &[SeriesInfo] {
        &self.series
    }

    fn timestamps(&self) -> &[i64] {
        &self.ts
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn scalars(&self, series: usize, rows: Range<usize>) -> anyhow::Result<Vec<Option<f64>>> {
        let rows: Vec<usize> = rows.collect();
        let mut out = Vec::with_capacity(rows.len());
        let gauge = self.series[series].kind == Kind::Gauge;
        self.read(self.columns[series], &rows, |a| {
            if gauge {
                let v = a
                    .as_primitive_opt::<Int64Type>()
                    .context("not an Int64 column")?;
                out.extend(v.iter().map(|x| x.map(|x| x as f64)));
            } else {
                let v = a
                    .as_primitive_opt::<UInt64Type>()
                    .context("not a UInt64 column")?;
                out.extend(v.iter().map(|x| x.map(|x| x as f64)));
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn histograms(&self, series: usize, rows: &[usize]) -> anyhow::Result<Vec<Option<Buckets>>> {
        let Kind::Histogram(layout) = self.series[series].kind else {
            anyhow::bail!("series {series} is not a histogram");
        };
        let mut out = Vec::with_capacity(rows.len());
        self.read(self.columns[series], rows, |a| {
            let list = a.as_list_opt::<i32>().context("not a list column")?;
            for i in 0..list.len() {
                if list.is_null(i) {
                    out.push(None);
                    continue;
                }
                let values = list.value(i);
                let v = values
                    .as_primitive_opt::<UInt64Type>()
                    .context("histogram buckets are not UInt64")?;
                // A row of another layout is damaged: no value there.
                if v.len() != layout.buckets() {
                    out.push(None);
                    continue;
                }
                let mut b = Buckets::default();
                for (j, c) in v.values().iter().enumerate() {
                    if *c != 0 {
                        b.index.push(j as u32);
                        b.count.push(*c);
                    }
                }
                out.push(Some(b));
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// The file read with positional reads: a `try_clone`d `File` shares its
/// offset with the original, so two readers seeking at once (an MCP
/// server answers calls in parallel) would read each other's bytes.
#[derive(Clone)]
struct Positional(Arc<File>);

impl parquet::file::reader::Length for Positional {
    fn len(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl parquet::file::reader::ChunkReader for Positional {
    type T = PositionalRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<PositionalRead> {
        Ok(PositionalRead {
            file: Arc::clone(&self.0),
            at: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0; length];
        self.0.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

struct PositionalRead {
    file: Arc<File>,
    at: u64,
}

impl std::io::Read for PositionalRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}
