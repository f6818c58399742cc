//! Read-only SQL over the lake, bounded in time, rows and memory.
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use thiserror::Error;

use crate::catalog::tables;
use crate::schema::table_name;
use crate::table::HepTable;

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
    #[error("query needs more memory than allowed: {0}")]
    ResourcesExhausted(String),
    /// Storage or engine failure: not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    pub fn is_user_error(&self) -> bool {
        !matches!(self, QueryError::Internal(_))
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

pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

pub struct QueryEngine {
    store: Arc<dyn ObjectStore>,
    url: ObjectStoreUrl,
    runtime: Arc<RuntimeEnv>,
    limits: QueryLimits,
}

impl QueryEngine {
    pub fn new(store: Arc<dyn ObjectStore>, limits: QueryLimits) -> crate::Result<Self> {
        let url = ObjectStoreUrl::parse("lake://hep/").expect("static URL");
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| crate::LakeError::Other(e.to_string()))?;
        runtime.register_object_store(url.as_ref(), store.clone());
        Ok(Self {
            store,
            url,
            runtime,
            limits,
        })
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A session with every existing `hep_<type>` table registered.
    async fn session(&self) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new().with_information_schema(true);
        let parquet = &mut config.options_mut().execution.parquet;
        // Evaluate filters while decoding: skips payload pages of rows that fail.
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        let now = chrono::Utc::now().timestamp_micros();
        let window = (
            now - self.limits.default_window.as_micros() as i64,
            now + self.limits.default_ahead.as_micros() as i64,
        );
        for t in tables(&self.store)
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?
        {
            let table = HepTable::new(t, self.store.clone(), self.url.clone(), window);
            ctx.register_table(table_name(t), Arc::new(table))?;
        }
        Ok(ctx)
    }

    /// Runs one read-only SQL statement.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        match tokio::time::timeout(self.limits.timeout, self.run(sql)).await {
            Ok(r) => r,
            // Dropping the future cancels DataFusion's tasks.
            Err(_) => Err(QueryError::Timeout(self.limits.timeout)),
        }
    }

    async fn run(&self, sql: &str) -> Result<QueryResult, QueryError> {
        if sql.trim().is_empty() {
            return Err(QueryError::Invalid("empty query".into()));
        }
        let ctx = self.session().await?;
        // DDL (CREATE/DROP ...), DML (INSERT, COPY ...) and statements (SET ...)
        // are refused while planning: the lake is read-only through SQL.
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await?;
        let mut stream = df.execute_stream().await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            if rows > self.limits.max_rows {
                return Err(QueryError::TooManyRows(self.limits.max_rows));
            }
            batches.push(batch);
        }
        Ok(QueryResult { schema, batches })
    }
}
