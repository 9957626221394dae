//! Sonde: an eBPF-first Linux kernel telemetry agent (the command line).

use sonde::{agent, config, exporter, hindsight, inspect, mcp, push, query, record, top, view};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use agent::config::AgentConfig;
use config::{ConfigError, LogLevel, Source};
use exporter::config::ExporterConfig;
use hindsight::config::HindsightConfig;
use push::config::PushConfig;

/// Sonde measures what /proc cannot give you — latency distributions of the
/// run queue, block I/O, syscalls and TCP, aggregated in the kernel — and
/// serves them to Prometheus.
#[derive(Parser)]
#[command(
    name = "sonde",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  sudo sonde config/agent.toml         run the agent\n  sonde --once config/agent.toml       print one snapshot and exit\n  sonde check config/agent.toml        validate a config file\n  sonde exporter config/exporter.toml  relay agents to one Prometheus target with percentiles\n  sonde push config/push.toml          push snapshots upstream, spooling while it is down\n  sonde record http://127.0.0.1:4251 -o run.parquet -- ./benchmark   record one run, 1 s resolution\n  sonde hindsight config/hindsight.toml  keep the last 15 min; kill -USR1 to dump it\n  sonde top config/agent.toml          the running agent's busiest processes, like top\n\nEndpoints of a running agent: /metrics (Prometheus text or OpenMetrics), /metrics/binary (msgpack), /metrics/json, /samplers, /top, /healthz.\nLog level: [log] level in the config, overridden by RUST_LOG."
)]
struct Cli {
    /// Agent config file (TOML); runs the agent, like `sonde agent FILE`.
    config: Option<PathBuf>,

    /// Refresh every sampler once, print the snapshot as Prometheus text to
    /// stdout and exit; opens no socket. eBPF counters count from attach,
    /// so they only show what happened during startup.
    #[arg(long)]
    once: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: load samplers, serve /metrics on [listen] address
    /// (default 127.0.0.1:4251). Needs root for the eBPF samplers.
    Agent {
        /// Agent config file (TOML).
        config: PathBuf,
        /// Refresh once, print Prometheus text, exit.
        #[arg(long)]
        once: bool,
    },
    /// Run the exporter: pull /metrics/binary from the agents in
    /// [[sources]] every [general] interval and serve one Prometheus target
    /// on [listen] address (default 127.0.0.1:4252) with latency
    /// percentiles. Needs no privileges.
    Exporter {
        /// Exporter config file (TOML), e.g. config/exporter.toml.
        config: PathBuf,
    },
    /// Run the pusher: pull the agent's /metrics/binary every [source]
    /// interval, spool each snapshot to disk and deliver it to every
    /// [[sinks]] (Prometheus remote-write 1.0, or HTTP POST of msgpack/JSON)
    /// in order, retrying while upstream is down. Its own /metrics is on
    /// [listen] address (default 127.0.0.1:4253). Needs no privileges.
    Push {
        /// Push config file (TOML), e.g. config/push.toml.
        config: PathBuf,
    },
    /// Record an agent's snapshots (Sonde's or Rezolus's /metrics/binary)
    /// at wall-clock-aligned intervals into one parquet file, in the layout
    /// Rezolus's viewer, pandas, polars and DuckDB read. Stops at
    /// --duration, when COMMAND exits (then exits with its status) or on
    /// Ctrl-C; the file is complete or absent, never torn.
    Record {
        /// The agent, e.g. http://127.0.0.1:4251 (/metrics/binary is pulled).
        url: String,
        /// The parquet file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Time between snapshots, e.g. 1s, 500ms.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// Stop after this long, e.g. 60s, 10m.
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "command")]
        duration: Option<std::time::Duration>,
        /// Replace the output file (and discard a spool an interrupted run
        /// left).
        #[arg(long)]
        force: bool,
        /// Continue an interrupted recording (killed, or stopped by a full
        /// disk): its spooled snapshots and the new ones go into the file.
        #[arg(long)]
        resume: bool,
        /// Record for exactly this command's lifetime: `-- COMMAND ARGS...`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Run the flight recorder: keep the last [buffer] duration of
    /// snapshots (default 15m at 1s) in a rolling on-disk buffer; SIGUSR1
    /// or POST /dump[?last=5m] on [listen] address (default 127.0.0.1:4254)
    /// writes the window to a parquet file in [dump] output_dir.
    Hindsight {
        /// Hindsight config file (TOML), e.g. config/hindsight.toml.
        config: PathBuf,
    },
    /// Show the running agent's busiest processes, like top: GETs /top from
    /// the agent at the [listen] address of CONFIG and prints PID, USER,
    /// CPU% (of one CPU, over the agent's last walk), RSS, READ/s, WRITE/s
    /// (storage I/O), THR (threads), COMM and CGROUP. Refreshes every walk
    /// interval ([samplers.processes] interval) until Ctrl-C, or prints once
    /// with --once. Needs no privileges; the agent must run with the
    /// processes sampler enabled.
    Top {
        /// The agent's config file (only its [listen] address is used).
        config: PathBuf,
        /// Print the table once and exit.
        #[arg(long)]
        once: bool,
        /// Rows to show (the agent keeps [samplers.processes] top of each list).
        #[arg(short = 'n', long = "rows", default_value_t = 20)]
        rows: usize,
        /// Rank by CPU over the last interval, or by resident memory.
        #[arg(long, value_enum, default_value = "cpu")]
        sort: top::Sort,
    },
    /// Evaluate a PromQL expression over a recording (`sonde record`'s, a
    /// hindsight dump, or Rezolus's parquet) or over a live agent, and print
    /// the result. Metrics answer to their registry names with stored units
    /// (`rate(cpu_usage[1m])`, ns per second; H2 histograms whole:
    /// `histogram_quantile(0.99, rate(scheduler_runqueue_latency[1m]))`)
    /// and to the names /metrics gives them (`rate(cpu_usage_seconds_total[1m])`,
    /// classic `_bucket{le}` and `_count` series), so dashboard queries run
    /// unchanged. Without --start and --step a table shows one instant, at
    /// the end. Times: RFC 3339, unix seconds, start, end, now, a duration
    /// back from the end (10m), end-10m, start+5m.
    #[command(
        after_help = "Examples:\n  sonde query run.parquet 'sum by (op) (rate(syscalls[1m]))'\n  sonde query run.parquet 'histogram_quantile(0.99, rate(scheduler_runqueue_latency_seconds_bucket[1m]))' -b 10m --step 10s\n  sonde query http://127.0.0.1:4251 'rate(cpu_usage_seconds_total[5s])' --format json"
    )]
    Query {
        /// A recording (.parquet) or an agent's URL (http://127.0.0.1:4251).
        source: String,
        /// The PromQL expression (may start with `-`).
        #[arg(allow_hyphen_values = true)]
        expr: String,
        /// Start of the range (default: the data's start).
        #[arg(short = 'b', long = "start", value_parser = parse_time)]
        start: Option<query::time::Time>,
        /// End of the range (default: the data's end).
        #[arg(short = 'e', long, value_parser = parse_time)]
        end: Option<query::time::Time>,
        /// Time between steps, e.g. 10s (default: 250 rows for a table,
        /// 1000 points otherwise, a multiple of the sampling interval).
        #[arg(long, value_parser = query::time::parse_step)]
        step: Option<std::time::Duration>,
        #[arg(long, value_enum, default_value = "table")]
        format: inspect::Format,
        /// For an agent: how long to poll it (default: the expression's
        /// longest range plus two intervals, at least 2 s).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        poll: Option<std::time::Duration>,
        /// For an agent: time between polls.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Print the samples of chosen series, every row between two times, as
    /// CSV, JSON or OpenMetrics (the names, units and classic buckets of the
    /// agent's /metrics, with timestamps: `promtool tsdb create-blocks-from
    /// openmetrics` reads it).
    #[command(
        after_help = "Examples:\n  sonde dump run.parquet 'cpu_usage' -b 5m\n  sonde dump run.parquet --format openmetrics > run.om && promtool tsdb create-blocks-from openmetrics run.om data/"
    )]
    Dump {
        /// A recording (.parquet) or an agent's URL.
        source: String,
        /// Series selectors, e.g. 'syscalls{op="read"}' (default: all).
        selectors: Vec<String>,
        /// Start of the rows (default: the data's start); times as for query.
        #[arg(short = 'b', long = "start", value_parser = parse_time)]
        start: Option<query::time::Time>,
        /// End of the rows (default: the data's end).
        #[arg(short = 'e', long, value_parser = parse_time)]
        end: Option<query::time::Time>,
        #[arg(long, value_enum, default_value = "csv")]
        format: inspect::dump::DumpFormat,
        /// For an agent: how long to poll it.
        #[arg(long = "for", default_value = "10s", value_parser = humantime::parse_duration)]
        poll: std::time::Duration,
        /// For an agent: time between polls.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Serve a recording (ours, a hindsight dump or Rezolus's parquet) or a
    /// live agent to an assistant over the Model Context Protocol on
    /// stdin/stdout. Tools: describe_recording, list_metrics, query,
    /// detect_anomalies, what_changed, correlate; all read-only. Logs go
    /// to stderr.
    #[command(
        after_help = "Examples (an MCP client starts the server):\n  sonde mcp /var/lib/sonde/run.parquet\n  sonde mcp incident.parquet --baseline normal.parquet\n  sonde mcp http://127.0.0.1:4251 --keep 30m"
    )]
    Mcp {
        /// A recording (.parquet) or an agent's URL (http://127.0.0.1:4251).
        source: String,
        /// A second recording that what_changed compares with when asked.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// For an agent: time between polls.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// For an agent: how much history to keep in memory.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        keep: std::time::Duration,
    },
    /// Look at a recording (ours, a hindsight dump or Rezolus's parquet), two
    /// recordings side by side (A/B, aligned on time since each one's start)
    /// or a live agent in the browser: sections for CPU, memory, the
    /// scheduler, syscalls, block I/O, network, softirqs, containers,
    /// processes and the agent itself, latency heatmaps, a query box, and
    /// "what changed" over a brushed range. Everything is served from the
    /// binary (no network); --config takes a [listen] section for TLS,
    /// credentials and an allowlist, as the agent's does.
    #[command(
        after_help = "Examples:\n  sonde view /var/lib/sonde/run.parquet            # then open http://127.0.0.1:4255/\n  sonde view before.parquet after.parquet           # A/B\n  sonde view http://127.0.0.1:4251 --keep 30m       # a live agent; the page saves it as parquet\n  sonde view run.parquet --listen 0.0.0.0:4255 --config view.toml"
    )]
    View {
        /// A recording (.parquet) or an agent's URL (http://127.0.0.1:4251);
        /// a second recording to compare with the first.
        #[arg(required = true, num_args = 1..=2)]
        sources: Vec<String>,
        /// Where to serve the page [default: 127.0.0.1:4255, or the
        /// config's [listen] address].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A TOML file with a [listen] section (tls_cert_file, basic_auth_users, allow, …).
        #[arg(long)]
        config: Option<PathBuf>,
        /// For an agent: time between polls (the agent refreshes when asked;
        /// 1s is a recording's resolution).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// For an agent: how much history to keep in memory.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        keep: std::time::Duration,
    },
    /// Validate a config file (agent, exporter, push or hindsight) and print every
    /// problem with its key and line. Exits 0 when valid, 2 when not.
    Check {
        config: PathBuf,
        /// The kind of file; guessed from its sections when omitted.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
    },
}

/// The three kinds of config file `sonde check` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Agent,
    Exporter,
    Push,
    Hindsight,
}

impl Kind {
    /// Guesses the kind from the sections a file has.
    fn detect(table: &toml::Table) -> Kind {
        if table.contains_key("sources") {
            Kind::Exporter
        } else if table.contains_key("buffer") || table.contains_key("dump") {
            Kind::Hindsight
        } else if table.contains_key("sinks")
            || table.contains_key("spool")
            || table.contains_key("source")
        {
            Kind::Push
        } else {
            Kind::Agent
        }
    }
}

/// Exit code for a bad config or bad usage, like clap's.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config, kind }) => check(&config, kind),
        Some(Command::Query {
            source,
            expr,
            start,
            end,
            step,
            format,
            poll,
            interval,
        }) => {
            init_logging(LogLevel::Warn);
            let window = poll.unwrap_or_else(|| {
                (inspect::longest_range(&expr) + 2 * interval)
                    .max(std::time::Duration::from_secs(2))
            });
            let target = inspect::Target::parse(&source, window, interval);
            let o = inspect::QueryOptions {
                expr,
                start,
                end,
                step,
                format,
            };
            report(inspect::run_query(&target, &o))
        }
        Some(Command::Dump {
            source,
            selectors,
            start,
            end,
            format,
            poll,
            interval,
        }) => {
            init_logging(LogLevel::Warn);
            let target = inspect::Target::parse(&source, poll, interval);
            let o = inspect::DumpOptions {
                selectors,
                start,
                end,
                format,
            };
            report(inspect::open(&target).and_then(|opened| {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                inspect::dump(&opened, &o, &mut out)
            }))
        }
        Some(Command::Mcp {
            source,
            baseline,
            interval,
            keep,
        }) => {
            init_logging(LogLevel::Warn);
            report(mcp::run(mcp::Options {
                source,
                baseline,
                interval,
                keep,
            }))
        }
        Some(Command::View {
            sources,
            listen,
            config,
            interval,
            keep,
        }) => {
            init_logging(LogLevel::Warn);
            report(view::run(view::Options {
                sources,
                listen,
                config,
                interval,
                keep,
            }))
        }
        Some(Command::Agent { config, once }) => agent(&config, once || cli.once),
        Some(Command::Exporter { config }) => exporter(&config),
        Some(Command::Push { config }) => pusher(&config),
        Some(Command::Hindsight { config }) => hindsight(&config),
        Some(Command::Top {
            config,
            once,
            rows,
            sort,
        }) => processes_top(&config, once, rows, sort),
        Some(Command::Record {
            url,
            output,
            interval,
            duration,
            force,
            resume,
            command,
        }) => recorder(record::Options {
            url,
            output,
            interval,
            duration,
            force,
            resume,
            command,
        }),
        None => match cli.config {
            Some(config) => agent(&config, cli.once),
            None => {
                eprintln!("error: no config file given\n\nUsage: sonde [--once] CONFIG | sonde agent CONFIG | sonde exporter CONFIG | sonde push CONFIG | sonde record URL -o FILE | sonde hindsight CONFIG | sonde top CONFIG | sonde check CONFIG\nTry 'sonde --help'.");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn agent(path: &Path, once: bool) -> ExitCode {
    let load = |p: &Path| AgentConfig::load(p, &push::spool_path);
    run_mode(
        load(path),
        |c| c.log.level,
        |config| match once {
            true => agent::once(config),
            false => agent::run(path, config, Box::new(load)),
        },
    )
}

fn exporter(path: &Path) -> ExitCode {
    run_mode(
        ExporterConfig::load(path),
        |c| c.log.level,
        |config| exporter::run(path, config, Box::new(ExporterConfig::load)),
    )
}

fn pusher(path: &Path) -> ExitCode {
    run_mode(
        PushConfig::load(path),
        |c| c.log.level,
        |config| push::run(path, config, Box::new(PushConfig::load)),
    )
}

fn hindsight(path: &Path) -> ExitCode {
    run_mode(
        HindsightConfig::load(path),
        |c| c.log.level,
        |config| hindsight::run(path, config, Box::new(HindsightConfig::load)),
    )
}

fn processes_top(path: &Path, once: bool, rows: usize, sort: top::Sort) -> ExitCode {
    run_mode(
        AgentConfig::load(path, &push::spool_path),
        |c| c.log.level,
        |config| {
            let l = &config.listen;
            if l.tls_cert_file.is_some()
                || l.web_config_file.is_some()
                || l.bearer_token_file.is_some()
                || !l.basic_auth_users.is_empty()
            {
                anyhow::bail!(
                    "{}: the agent's [listen] uses TLS or credentials, which `sonde top` does not speak yet; use `curl` on /top with them",
                    path.display()
                );
            }
            top::run(top::Options {
                listen: config.listen.address.0,
                once,
                rows,
                sort,
            })
        },
    )
}

fn recorder(options: record::Options) -> ExitCode {
    init_logging(LogLevel::default());
    if options.interval < std::time::Duration::from_millis(100) {
        eprintln!("error: --interval must be at least 100ms");
        return ExitCode::from(EXIT_CONFIG);
    }
    match record::run(options) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every mode does: exit 2 on a bad config, else log at the config's
/// level, run, and exit 1 with one line on a runtime error.
fn run_mode<C>(
    loaded: Result<C, ConfigError>,
    level: fn(&C) -> LogLevel,
    run: impl FnOnce(C) -> anyhow::Result<()>,
) -> ExitCode {
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    init_logging(level(&config));
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_time(s: &str) -> Result<query::time::Time, String> {
    s.parse()
}

/// Exit 0, or print the error: a bad query is bad usage (2), anything
/// else (a file that cannot be read, an agent that does not answer) 1.
fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): not an error, as for cat.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<query::QueryError>() {
                Some(query::QueryError::Source(_)) | None => ExitCode::FAILURE,
                Some(_) => ExitCode::from(EXIT_CONFIG),
            }
        }
    }
}

fn check(path: &Path, kind: Option<Kind>) -> ExitCode {
    let source = match Source::read(path) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    let kind = match (kind, source.table()) {
        (Some(k), _) => k,
        (None, Ok(t)) => Kind::detect(&t),
        (None, Err(e)) => return config_error(&e),
    };
    let result = match kind {
        Kind::Agent => AgentConfig::from_source(&source, &push::spool_path).map(drop),
        Kind::Exporter => ExporterConfig::from_source(&source).map(drop),
        Kind::Push => PushConfig::from_source(&source).map(drop),
        Kind::Hindsight => HindsightConfig::from_source(&source).map(drop),
    };
    match result {
        Ok(()) => {
            println!(
                "{}: valid {} config",
                path.display(),
                format!("{kind:?}").to_lowercase()
            );
            ExitCode::SUCCESS
        }
        Err(e) => config_error(&e),
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("{e}");
    let n = e.problems.len();
    eprintln!(
        "error: {n} problem{} in {}",
        if n == 1 { "" } else { "s" },
        e.path.display()
    );
    ExitCode::from(EXIT_CONFIG)
}

fn init_logging(level: LogLevel) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // A stderr that fails (journald restarting, a closed pipe) must not
        // turn a log line into a panic: the default reports the failure
        // with eprintln!, which panics on that same stderr.
        .log_internal_errors(false)
        .try_init();
}
