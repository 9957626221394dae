//! `sonde mcp`: a Model Context Protocol server on stdin/stdout (rmcp)
//! that lets an assistant read a recording (ours, a hindsight dump or
//! Rezolus's) or a live agent: describe it, list its metrics, run PromQL,
//! find anomalies, rank what changed, and correlate. Every tool is
//! read-only, answers with `structuredContent` under a published
//! `outputSchema`, stays within a few thousand tokens by default, and
//! reports a bad argument as a tool error (`isError`) that says how to
//! fix it. Logs go to stderr; stdout is the protocol's.

mod tools;
pub mod types;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_handler, tool_router, Json, ServerHandler, ServiceExt as _};

use crate::parquet::Recording;
use crate::query::{Memory, Source};
use types::*;

/// What the server reads.
pub enum Data {
    File(Box<Recording>),
    /// An agent polled into memory, newest rows kept.
    Live {
        url: String,
        memory: Arc<RwLock<Memory>>,
    },
}

pub struct State {
    pub data: Data,
    /// A second recording to compare with (`--baseline`).
    pub baseline: Option<Box<Recording>>,
}

impl State {
    /// Runs `f` on the data as a source.
    pub fn with<R>(&self, f: impl FnOnce(&dyn Source) -> R) -> R {
        match &self.data {
            Data::File(r) => f(r.as_ref()),
            Data::Live { memory, .. } => {
                let m = memory.read().unwrap_or_else(|e| e.into_inner());
                f(&*m)
            }
        }
    }
}

#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
    tool_router: ToolRouter<Server>,
}

/// Runs `f` off the protocol's threads (analyses take CPU).
async fn blocking<T: Send + 'static>(
    state: &Arc<State>,
    f: impl FnOnce(&State) -> Result<T, String> + Send + 'static,
) -> Result<Json<T>, String> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| format!("the tool failed: {e}"))?
        .map(Json)
}

#[tool_router]
impl Server {
    pub fn new(state: State) -> Server {
        Server {
            state: Arc::new(state),
            tool_router: Self::tool_router(),
        }
    }

    /// What the data is: its source and kind, time span, sampling
    /// interval, gaps, whether it was truncated, the host it was recorded
    /// on, and its samplers with their metric families. Call this first.
    #[tool(annotations(
        title = "Describe the recording",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn describe_recording(&self, _: Parameters<NoArgs>) -> Result<Json<Described>, String> {
        blocking(&self.state, tools::describe).await
    }

    /// The metrics the data has: registry name (stored units) and the
    /// Prometheus name /metrics uses, kind, unit, help text, series count
    /// and label values. Use the names in query, or the filter of the
    /// other tools.
    #[tool(annotations(
        title = "List the metrics",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn list_metrics(
        &self,
        Parameters(a): Parameters<ListArgs>,
    ) -> Result<Json<Listed>, String> {
        blocking(&self.state, move |s| tools::list(s, a)).await
    }

    /// Evaluates PromQL (Prometheus 2 semantics) over a range. Answers are
    /// bounded: at most max_series series (default 10) and max_points
    /// points each (default 60, downsampled to min/median/max), with a
    /// `truncated` flag.
    #[tool(annotations(title = "PromQL query", read_only_hint = true, open_world_hint = false))]
    async fn query(&self, Parameters(a): Parameters<QueryArgs>) -> Result<Json<Queried>, String> {
        blocking(&self.state, move |s| tools::query(s, a)).await
    }

    /// Finds anomalous windows in every series (or those the filter names):
    /// robust z-score, two-sided CUSUM and PELT change points, each window
    /// scored by its effect size, ranked, at most one per metric family.
    #[tool(annotations(
        title = "Detect anomalies",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn detect_anomalies(
        &self,
        Parameters(a): Parameters<AnomalyArgs>,
    ) -> Result<Json<Anomalies>, String> {
        blocking(&self.state, move |s| tools::anomalies(s, a)).await
    }

    /// Ranks every series by how its values in [start, end] differ from a
    /// baseline (the window just before, or a second recording): the
    /// Kolmogorov–Smirnov distance, then the effect size.
    #[tool(annotations(title = "What changed", read_only_hint = true, open_world_hint = false))]
    async fn what_changed(
        &self,
        Parameters(a): Parameters<ChangedArgs>,
    ) -> Result<Json<Changed>, String> {
        blocking(&self.state, move |s| tools::changed(s, a)).await
    }

    /// Ranks every series by |Pearson's r| with a target series (a PromQL
    /// expression giving one series).
    #[tool(annotations(title = "Correlate", read_only_hint = true, open_world_hint = false))]
    async fn correlate(
        &self,
        Parameters(a): Parameters<CorrelateArgs>,
    ) -> Result<Json<Correlated>, String> {
        blocking(&self.state, move |s| tools::correlate(s, a)).await
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "sonde",
    instructions = "Sonde's recordings of Linux kernel telemetry (scheduler, syscalls, block I/O, TCP, cgroups, processes). Start with describe_recording, then list_metrics; detect_anomalies and what_changed find what went wrong, query shows it. Times: RFC 3339, unix seconds, start, end, 10m (back from the end), end-10m, start+5m."
)]
impl ServerHandler for Server {}

/// What `sonde mcp` was asked to serve.
pub struct Options {
    /// A recording, or an agent's URL.
    pub source: String,
    pub baseline: Option<PathBuf>,
    /// For an agent: poll interval and how much to keep.
    pub interval: Duration,
    pub keep: Duration,
}

/// Serves until the client closes stdin.
pub fn run(o: Options) -> anyhow::Result<()> {
    let rt = crate::runtime::build("sonde-mcp")?;
    rt.block_on(async move {
        let data = if o.source.starts_with("http://") || o.source.starts_with("https://") {
            let rows = (o.keep.as_nanos() / o.interval.as_nanos().max(1)) as usize + 1;
            let memory = Arc::new(RwLock::new(Memory::new(rows, Some(o.interval))));
            tokio::spawn(tools::poll(
                o.source.clone(),
                o.interval,
                Arc::clone(&memory),
            ));
            Data::Live {
                url: o.source.clone(),
                memory,
            }
        } else {
            Data::File(Box::new(Recording::open(std::path::Path::new(&o.source))?))
        };
        let baseline = match &o.baseline {
            Some(p) => Some(Box::new(Recording::open(p)?)),
            None => None,
        };
        tracing::info!("serving {} over MCP on stdio", o.source);
        let server = Server::new(State { data, baseline });
        let service = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| anyhow::anyhow!("MCP handshake failed: {e}"))?;
        service.waiting().await?;
        anyhow::Ok(())
    })
}
