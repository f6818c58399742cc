//! Read-only SQL over the lake, bounded in time, rows and memory.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::catalog::tables;
use crate::listing_cache::{ListingCache, WatchedStore};
use crate::read_cache::{BloomCache, CacheStats, CachingReaderFactory, FileStats};
use crate::schema::{CALLS_TABLE, table_name};
use crate::table::{HepTable, RowGroupCounts, TableSources};

#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// A query running longer is cancelled.
    pub timeout: Duration,
    /// A result with more rows is refused (add LIMIT or narrow the time range).
    pub max_rows: usize,
    /// Memory for sorts, joins and aggregates; beyond it the query fails cleanly.
    pub memory_bytes: usize,
    /// Window a query covers when it has no condition on `time`: this long
    /// before now...
    pub default_window: Duration,
    /// ...to this long after it (the clock skew capture times may have; see `hep::TimeWindow`).
    pub default_ahead: Duration,
    /// Queries running at once; one more is refused (HTTP 429), not queued.
    pub max_concurrent: usize,
    /// Threads of the query pool, apart from the caller's runtime (0: one per core).
    pub threads: usize,
    /// Query threads run only on CPU time the rest of the process leaves
    /// (Linux SCHED_IDLE): where listeners and a writer share the cores
    /// (`hepop serve`). The query function has nothing to yield to.
    pub yield_to_ingest: bool,
    /// Parquet footers and page indexes kept across queries (files never change).
    pub metadata_cache_bytes: usize,
    /// Bloom filters kept across queries.
    pub bloom_cache_bytes: usize,
    /// Files whose lookup-column statistics are kept (about 1 KiB each).
    pub file_stats_entries: usize,
    /// How long a partition listing is reused: the staleness a writer in
    /// another process (the ingest Lambda) can cause. This process's own
    /// writes are seen at once (`listing_cache::WatchedStore`).
    pub listing_ttl: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
            memory_bytes: 1 << 30,
            default_window: Duration::from_secs(600),
            default_ahead: Duration::from_micros(
                hep::TimeWindow::default().max_ahead_micros as u64,
            ),
            max_concurrent: 4,
            threads: 0,
            yield_to_ingest: true,
            metadata_cache_bytes: 256 << 20,
            bloom_cache_bytes: 64 << 20,
            file_stats_entries: 50_000,
            listing_ttl: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Error)]
pub enum QueryError {
    /// Bad SQL, unknown table or column, refused statement: the caller's to fix.
    #[error("{0}")]
    Invalid(String),
    #[error("query did not finish within {0:?}; narrow the time range or add conditions")]
    Timeout(Duration),
    #[error("result has more than {0} rows; add LIMIT or narrow the time range")]
    TooManyRows(usize),
    #[error(
        "result is over the {0}-byte response limit; page with LIMIT/OFFSET or select fewer columns"
    )]
    TooLarge(usize),
    #[error("query needs more memory than allowed: {0}")]
    ResourcesExhausted(String),
    /// Every query slot is taken: try again shortly.
    #[error("{0} queries are already running; try again shortly")]
    Busy(usize),
    /// Storage or engine failure: not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// The caller can fix it by changing the query (HTTP 400).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, QueryError::Internal(_) | QueryError::Busy(_))
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::ObjectStore(_)
            | DataFusionError::IoError(_)
            | DataFusionError::External(_) => QueryError::Internal(e.strip_backtrace()),
            DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m.clone()),
            _ => QueryError::Invalid(e.strip_backtrace()),
        }
    }
}

/// Takes a query's result batch by batch, on the query pool (encoding is
/// query work too), and makes the answer.
pub trait ResultSink: Send + 'static {
    type Output: Send + 'static;
    fn batch(&mut self, schema: &SchemaRef, batch: &RecordBatch) -> Result<(), QueryError>;
    fn finish(self, schema: &SchemaRef) -> Result<Self::Output, QueryError>;
}

pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Collects the batches (the CLI, tests).
#[derive(Default)]
struct Collect(Vec<RecordBatch>);

impl ResultSink for Collect {
    type Output = QueryResult;

    fn batch(&mut self, _: &SchemaRef, batch: &RecordBatch) -> Result<(), QueryError> {
        self.0.push(batch.clone());
        Ok(())
    }

    fn finish(self, schema: &SchemaRef) -> Result<QueryResult, QueryError> {
        Ok(QueryResult {
            schema: schema.clone(),
            batches: self.0,
        })
    }
}

/// The query pool: its own threads, at a lower priority, so CPU-bound
/// queries can neither starve the listeners and writer nor the timer that
/// enforces their own timeout.
struct QueryPool {
    runtime: Option<tokio::runtime::Runtime>,
    slots: Arc<Semaphore>,
}

impl QueryPool {
    fn new(limits: &QueryLimits) -> std::io::Result<Self> {
        let threads = match limits.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads.max(4))
            .thread_name("hepop-query")
            // Planning deep expressions recurses; tokio's 2 MiB default overflowed
            // on a plain scan in debug builds. Only touched pages cost memory.
            .thread_stack_size(QUERY_THREAD_STACK)
            .on_thread_start(if limits.yield_to_ingest {
                lower_thread_priority
            } else {
                || {}
            })
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context panics; this does not block.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

const QUERY_THREAD_STACK: usize = 16 << 20;

/// Ingest comes first: query threads run only on CPU time the listeners and
/// writer leave (Linux SCHED_IDLE; nice 19 where that is refused). With nice
/// 10, four CPU-bound queries still cost a UDP burst here (docs/PERFORMANCE.md).
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority as it was.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}

/// Aborts the query task when the caller stops waiting (timeout, client
/// gone). The task stops at its next yield; the flag also stops it at its next
/// scalar function call (`bounded_functions`), since one batch of a
/// projection runs all its functions within one poll.
struct AbortOnDrop(tokio::task::AbortHandle, Arc<AtomicBool>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.1.store(true, Ordering::Relaxed);
        self.0.abort();
    }
}

struct Lake {
    sources: TableSources,
    blooms: Arc<BloomCache>,
    runtime: Arc<RuntimeEnv>,
    limits: QueryLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheReport {
    pub metadata_entries: usize,
    pub blooms: CacheStats,
    pub listing_hits: u64,
    pub listing_misses: u64,
    /// Row groups by what time windows and lookups did to them at planning.
    pub row_groups: RowGroupCounts,
}

pub struct QueryEngine {
    lake: Arc<Lake>,
    pool: QueryPool,
}

impl QueryEngine {
    pub fn new(store: Arc<dyn ObjectStore>, limits: QueryLimits) -> crate::Result<Self> {
        let url = ObjectStoreUrl::parse("lake://hep/").expect("static URL");
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_metadata_cache_limit(limits.metadata_cache_bytes),
            )
            .build_arc()
            .map_err(|e| crate::LakeError::Other(e.to_string()))?;
        runtime.register_object_store(url.as_ref(), store.clone());
        let blooms = Arc::new(BloomCache::new(limits.bloom_cache_bytes));
        let stats = Arc::new(FileStats::new(limits.file_stats_entries));
        let readers = Arc::new(CachingReaderFactory::new(
            store.clone(),
            runtime.cache_manager.get_file_metadata_cache(),
            blooms.clone(),
            stats.clone(),
        ));
        let pool = QueryPool::new(&limits)
            .map_err(|e| crate::LakeError::Other(format!("starting the query pool: {e}")))?;
        Ok(Self {
            lake: Arc::new(Lake {
                sources: TableSources {
                    listings: Arc::new(ListingCache::new(store, limits.listing_ttl)),
                    readers,
                    stats,
                    planned: Arc::default(),
                    url,
                },
                blooms,
                runtime,
                limits,
            }),
            pool,
        })
    }

    /// `store` as this process's writer and compactor must use it, so that
    /// queries see their writes at once despite the listing cache.
    pub fn watched(&self, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(WatchedStore::new(store, self.lake.sources.listings.clone()))
    }

    /// Hits and misses of the caches so far (metrics, tests).
    pub fn cache_stats(&self) -> CacheReport {
        let md = self.lake.runtime.cache_manager.get_file_metadata_cache();
        let (listing_hits, listing_misses) = self.lake.sources.listings.stats();
        CacheReport {
            metadata_entries: md.len(),
            blooms: self.lake.blooms.stats(),
            listing_hits,
            listing_misses,
            row_groups: self.lake.sources.planned.get(),
        }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.lake.limits
    }

    /// Queries holding a slot now, cancelled ones still winding down included.
    pub fn running(&self) -> usize {
        self.lake.limits.max_concurrent.max(1) - self.pool.slots.available_permits()
    }

    /// Runs one read-only SQL statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.query_into(sql, Collect::default()).await
    }

    /// Runs one read-only SQL statement on the query pool, feeding `sink`;
    /// answers within the timeout whatever the query computes.
    pub async fn query_into<S: ResultSink>(
        &self,
        sql: &str,
        sink: S,
    ) -> Result<S::Output, QueryError> {
        let sql = sql.to_owned();
        self.job(move |lake| async move { lake.run(&sql, &[], sink).await })
            .await
    }

    /// Runs `work` on the query pool under one query slot and one timeout
    /// for all of it: a request made of several statements (a call flow and
    /// its export) is bounded as a whole, and its encoding is query work too.
    /// The statements share one view of which tables exist.
    pub async fn job<T, E, F, Fut>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(Statements) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<QueryError> + Send + 'static,
    {
        let limits = &self.lake.limits;
        let slot = self
            .pool
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueryError::Busy(limits.max_concurrent))?;
        let lake = self.lake.clone();
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = abandoned.clone();
        let task = self.pool.handle().spawn(async move {
            // The slot is free only once the work really stopped.
            let _slot = slot;
            let ctx = lake.session(stop).await?;
            work(Statements { lake, ctx }).await
        });
        let _abort = AbortOnDrop(task.abort_handle(), abandoned);
        match tokio::time::timeout(limits.timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "query task failed");
                Err(QueryError::Internal(format!("query task failed: {e}")).into())
            }
            Err(_) => Err(QueryError::Timeout(limits.timeout).into()),
        }
    }
}

/// The statements of one [`QueryEngine::job`]. Values go in as parameters
/// (`$1`, `$2` …), never pasted into the SQL text, so what a value holds
/// can neither change a statement nor grow it.
pub struct Statements {
    lake: Arc<Lake>,
    ctx: SessionContext,
}

impl Statements {
    /// Runs `sql` with `params` bound to `$1`, `$2` … as text, and collects the result.
    pub async fn query(&self, sql: &str, params: &[&str]) -> Result<QueryResult, QueryError> {
        self.run(sql, params, Collect::default()).await
    }

    /// Runs `sql` with `params` and hands its batches over one at a time.
    pub async fn rows(&self, sql: &str, params: &[&str]) -> Result<Rows, QueryError> {
        let df = self.plan(sql, params).await?;
        Ok(Rows {
            stream: df.execute_stream().await?,
            rows: 0,
            max_rows: self.lake.limits.max_rows,
        })
    }

    /// Where the `calls` table's records end (µs): the end of the last hour
    /// it holds a file of; None when it holds none. Calls that began later
    /// are found from their messages.
    pub async fn calls_recorded_until(&self) -> Result<Option<i64>, QueryError> {
        let held = self
            .lake
            .sources
            .listings
            .calls()
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        Ok(held
            .keys()
            .next_back()
            .map(|h| (h + 1) * crate::paths::MICROS_PER_HOUR))
    }

    /// The columns `sql` would answer and how many `$n` parameters it takes,
    /// planned without running it (Flight SQL's prepared statements).
    pub async fn describe(&self, sql: &str) -> Result<(SchemaRef, usize), QueryError> {
        let df = self.plan(sql, &[]).await?;
        let params = df.logical_plan().get_parameter_types()?.len();
        Ok((Arc::new(df.schema().as_arrow().clone()), params))
    }

    async fn plan(&self, sql: &str, params: &[&str]) -> Result<DataFrame, QueryError> {
        if sql.trim().is_empty() {
            return Err(QueryError::Invalid("empty query".into()));
        }
        crate::sql_limits::check(sql).map_err(QueryError::Invalid)?;
        // DDL (CREATE/DROP ...), DML (INSERT, COPY ...) and statements (SET ...)
        // are refused while planning: the lake is read-only through SQL.
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self.ctx.sql_with_options(sql, options).await?;
        if params.is_empty() {
            return Ok(df);
        }
        let values: Vec<ScalarValue> = params
            .iter()
            .map(|p| ScalarValue::Utf8(Some((*p).to_owned())))
            .collect();
        Ok(df.with_param_values(values)?)
    }

    async fn run<S: ResultSink>(
        &self,
        sql: &str,
        params: &[&str],
        mut sink: S,
    ) -> Result<S::Output, QueryError> {
        let mut rows = self.rows(sql, params).await?;
        while let Some(batch) = rows.next().await? {
            sink.batch(&rows.schema(), &batch)?;
        }
        sink.finish(&rows.schema())
    }
}

/// A statement's result as it is computed; more than the row limit is an error.
pub struct Rows {
    stream: SendableRecordBatchStream,
    rows: usize,
    max_rows: usize,
}

impl Rows {
    pub fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }

    pub async fn next(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        let Some(batch) = self.stream.next().await else {
            return Ok(None);
        };
        let batch = batch?;
        self.rows += batch.num_rows();
        if self.rows > self.max_rows {
            return Err(QueryError::TooManyRows(self.max_rows));
        }
        Ok(Some(batch))
    }
}

impl Lake {
    /// A session with every existing `hep_<type>` table registered.
    async fn session(&self, abandoned: Arc<AtomicBool>) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new().with_information_schema(true);
        let parquet = &mut config.options_mut().execution.parquet;
        // Evaluate filters while decoding: skips payload pages of rows that fail.
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::cooperative::YieldEverywhere))
            .build();
        let ctx = SessionContext::new_with_state(state);
        crate::bounded_functions::register(&ctx, abandoned)?;
        let now = chrono::Utc::now().timestamp_micros();
        let window = (
            now - self.limits.default_window.as_micros() as i64,
            now + self.limits.default_ahead.as_micros() as i64,
        );
        for t in tables(self.sources.listings.as_ref())
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?
        {
            let table = HepTable::new(t, self.sources.clone(), window);
            ctx.register_table(table_name(t), Arc::new(table))?;
        }
        let calls = crate::calls::table::CallRecords::new(self.sources.clone());
        ctx.register_table(CALLS_TABLE, Arc::new(calls))?;
        Ok(ctx)
    }
}
