//! `sonde query` and `sonde dump`: one-shot reads of a recording (ours,
//! a hindsight dump or Rezolus's parquet) or of a live agent, through the
//! query engine, printed as a table, CSV, JSON or OpenMetrics.

pub mod dump;
mod output;

pub use dump::{dump, DumpOptions};
pub use output::Format;

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::parquet::Recording;
use crate::query::time::{auto_step, Time};
use crate::query::{self, Grid, Memory, Source};
use crate::snapshot::fetch;

/// Where the data comes from, as the user named it.
pub enum Target {
    File(std::path::PathBuf),
    /// An agent's base URL, polled for `window` at `interval`.
    Agent {
        url: String,
        window: Duration,
        interval: Duration,
    },
}

impl Target {
    /// `FILE` or `http(s)://…`; `window` for an agent (how long to poll).
    pub fn parse(s: &str, window: Duration, interval: Duration) -> Target {
        if s.starts_with("http://") || s.starts_with("https://") {
            Target::Agent {
                url: s.trim_end_matches('/').to_string(),
                window,
                interval,
            }
        } else {
            Target::File(s.into())
        }
    }
}

/// An open source.
pub enum Opened {
    File(Box<Recording>),
    Live(Box<Memory>),
}

impl Opened {
    pub fn source(&self) -> &dyn Source {
        match self {
            Opened::File(r) => r.as_ref(),
            Opened::Live(m) => m.as_ref(),
        }
    }
}

/// Opens a recording, or polls an agent for its window (progress on
/// stderr).
pub fn open(target: &Target) -> anyhow::Result<Opened> {
    match target {
        Target::File(path) => Ok(Opened::File(Box::new(Recording::open(path)?))),
        Target::Agent {
            url,
            window,
            interval,
        } => Ok(Opened::Live(Box::new(poll(url, *window, *interval)?))),
    }
}

/// Polls `url`'s `/metrics/binary` at `interval` for `window` (at least
/// two snapshots), into memory.
fn poll(url: &str, window: Duration, interval: Duration) -> anyhow::Result<Memory> {
    let rows = (window.as_nanos() / interval.as_nanos().max(1)) as usize + 2;
    let mut mem = Memory::new(rows, Some(interval));
    let binary = fetch::binary_url(url);
    let rt = crate::runtime::build("sonde-inspect")?;
    rt.block_on(async {
        let client = crate::client::shared();
        let started = Instant::now();
        let mut ticker = crate::runtime::Ticker::new(interval);
        let mut n = 0usize;
        loop {
            let (s, _) = fetch::snapshot(
                &client,
                &binary,
                &Default::default(),
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {binary}: {e}"))?;
            mem.push(&s);
            n += 1;
            if started.elapsed() >= window && n >= 2 {
                break;
            }
            let _ = write!(
                std::io::stderr(),
                "\rpolling {url}: {n} snapshots, {:.0} of {:.0} s ",
                started.elapsed().as_secs_f64(),
                window.as_secs_f64()
            );
            ticker.tick().await;
        }
        let _ = writeln!(std::io::stderr());
        anyhow::Ok(())
    })?;
    Ok(mem)
}

/// What `sonde query` was asked.
pub struct QueryOptions {
    pub expr: String,
    pub start: Option<Time>,
    pub end: Option<Time>,
    pub step: Option<Duration>,
    pub format: Format,
}

/// The grid of a query over `src`: the times given (default: the whole
/// data; an instant query at its end when neither is given and the
/// format is a table), at `step` (default: about 250 rows for a table,
/// 1000 points otherwise).
pub fn grid(src: &dyn Source, o: &QueryOptions) -> anyhow::Result<Grid> {
    let ts = src.timestamps();
    let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
        anyhow::bail!("the data holds no sample");
    };
    // Clipped to the data: outside it every step is empty.
    let end = o.end.map_or(last, |t| t.at(first, last).min(last));
    if o.start.is_none() && o.step.is_none() && o.format == Format::Table {
        return Ok(Grid {
            start: end,
            step: 1,
            steps: 1,
        });
    }
    let start = o.start.map_or(first, |t| t.at(first, last).max(first));
    if start > end {
        anyhow::bail!(
            "the start ({}) is after the end ({})",
            query::time::rfc3339(start),
            query::time::rfc3339(end)
        );
    }
    let max_points = if o.format == Format::Table { 250 } else { 1000 };
    let step = match o.step {
        Some(s) => s.as_nanos() as i64,
        None => auto_step(end - start, src.interval(), max_points),
    };
    let steps = ((end - start) / step) as usize + 1;
    if steps > 1_000_000 {
        anyhow::bail!(
            "{steps} steps of {:?} from {} to {}: raise --step (at most 1,000,000 steps)",
            std::time::Duration::from_nanos(step as u64),
            query::time::rfc3339(start),
            query::time::rfc3339(end)
        );
    }
    Ok(Grid { start, step, steps })
}

/// Runs `sonde query`: evaluates and prints.
pub fn run_query(target: &Target, o: &QueryOptions) -> anyhow::Result<()> {
    let opened = open(target)?;
    let src = opened.source();
    let grid = grid(src, o)?;
    let answer = query::range(src, &o.expr, grid)?;
    let mut out = std::io::stdout().lock();
    output::write(&mut out, &answer, o.format)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// The longest range a query's selectors look back over (for how long a
/// live agent must be polled), 0 when none.
pub fn longest_range(expr: &str) -> Duration {
    let mut best = Duration::ZERO;
    let mut rest = expr;
    while let Some(i) = rest.find('[') {
        rest = &rest[i + 1..];
        let Some(j) = rest.find(']') else { break };
        let inner = rest[..j].split(':').next().unwrap_or("");
        if let Ok(d) = humantime::parse_duration(inner.trim()) {
            best = best.max(d);
        }
        rest = &rest[j..];
    }
    best
}
