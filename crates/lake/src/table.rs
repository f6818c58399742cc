//! `hep_<type>` as a DataFusion table: lists only the hour partitions the
//! query's time bounds allow, reads only visible files, applies the default
//! "last 10 minutes" window when the query says nothing of `time`, and
//! filters by time only what the window cuts: a row's hour partition is the
//! hour of its `time` (`paths::Partition::for_micros`), so the rows of an
//! hour wholly inside all match; in an hour the window cuts, so do those of
//! a row group whose `time` statistics lie inside (files are ordered by
//! minute first, `schema::SortKey`), and a row group wholly outside is not
//! read.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{col, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics as ParquetStatistics;

use crate::catalog::{PartitionListing, partitions};
use crate::listing_cache::ListingCache;
use crate::lookup::{self, Lookup, lookups};
use crate::paths::{MICROS_PER_HOUR, Partition, bundle_row_group};
use crate::read_cache::FileStats;
use crate::schema::{TIME, query_schema_for, time_type};
use crate::time_range::{TimeRange, from_filters, is_time_bound};

/// What every table of one query engine shares.
#[derive(Debug, Clone)]
pub struct TableSources {
    pub listings: Arc<ListingCache>,
    /// Reads Parquet through the engine's metadata and bloom filter caches.
    pub readers: Arc<dyn ParquetFileReaderFactory>,
    /// Statistics of files already opened once: a file they rule out is not opened again.
    pub stats: Arc<FileStats>,
    /// What time windows and lookups did to the row groups scans planned.
    pub planned: Arc<PlanCounts>,
    pub url: ObjectStoreUrl,
}

#[derive(Debug)]
pub struct HepTable {
    hep_type: u8,
    schema: SchemaRef,
    sources: TableSources,
    /// The default window (µs, inclusive) for queries with no `time` condition.
    default_window: (i64, i64),
}

impl HepTable {
    pub fn new(hep_type: u8, sources: TableSources, default_window: (i64, i64)) -> Self {
        Self {
            hep_type,
            schema: query_schema_for(hep_type),
            sources,
            default_window,
        }
    }

    /// Every partition that can hold rows in `range`, with its visible files.
    async fn listings(&self, range: TimeRange) -> crate::Result<Vec<Arc<PartitionListing>>> {
        let lo = range.lo.map(|v| v.div_euclid(MICROS_PER_HOUR));
        let hi = range.hi.map(|v| v.div_euclid(MICROS_PER_HOUR));
        if matches!((lo, hi), (Some(l), Some(h)) if l > h) {
            return Ok(vec![]);
        }
        let listings = &self.sources.listings;
        let parts = partitions(listings.as_ref(), self.hep_type, lo, hi).await?;
        futures::stream::iter(parts)
            .map(|p| listings.partition(p))
            .buffer_unordered(16)
            .try_collect()
            .await
    }

    /// A visible file as the scan reads it, and the row groups it may read:
    /// of a bundle, only this table's.
    fn scanned_file(&self, meta: &ObjectMeta) -> (PartitionedFile, Option<usize>) {
        let file = PartitionedFile::from(meta.clone());
        match bundle_row_group(&meta.location, self.hep_type) {
            Some((row_group, row_groups)) => (
                file.with_extension(access_plan(row_groups, [row_group])),
                Some(row_group),
            ),
            None => (file, None),
        }
    }

    /// Plans the read of one file from its footer (through the engine's
    /// metadata cache: the scan reads it next): the row groups the lookups
    /// rule out are dropped; in an hour the window cuts (`window`), those
    /// wholly outside are dropped too and those it cuts set apart.
    /// Returns (the part read unfiltered, the part to filter by time).
    async fn plan_file(
        &self,
        file: PartitionedFile,
        only: Option<usize>,
        window: Option<&WindowCheck>,
        lookups: &[Lookup],
        range: TimeRange,
        hint: Option<usize>,
    ) -> Result<(Option<PartitionedFile>, Option<PartitionedFile>)> {
        let mut reader = self.sources.readers.create_reader(
            0,
            file.clone(),
            hint,
            &ExecutionPlanMetricsSet::new(),
        )?;
        let md = reader.get_metadata(None).await?;
        let n = md.num_row_groups();
        let mut candidates: Vec<usize> = match only {
            Some(g) => vec![g],
            None => (0..n).collect(),
        };
        if !lookups.is_empty() {
            let before = candidates.len();
            candidates = admitted(reader.as_mut(), &md, candidates, lookups).await?;
            self.sources
                .planned
                .add_lookup(candidates.len(), before - candidates.len());
        }
        let (inside, cut) = match window {
            Some(check) => {
                let split = split_row_groups(&md, candidates, check, range)?;
                self.sources.planned.add_window(&split);
                (split.inside, split.cut)
            }
            None => (candidates, Vec::new()),
        };
        if only.is_none() && inside.len() == n {
            return Ok((Some(file), None));
        }
        let part = |groups: Vec<usize>| {
            (!groups.is_empty()).then(|| {
                let (start, end) = byte_range(&md, &groups);
                file.clone()
                    .with_extension(access_plan(n, groups))
                    .with_range(start, end)
            })
        };
        Ok((part(inside), part(cut)))
    }

    /// One Parquet scan of `files`, spread over the session's partitions.
    fn parquet_scan(
        &self,
        state: &dyn Session,
        files: Vec<PartitionedFile>,
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        parquet_scan(&self.sources, &self.schema, state, files, projection, limit)
    }
}

/// Decides whether a condition on `time` holds for a whole stretch of time
/// (an hour, a row group's span).
struct WindowCheck {
    condition: Arc<dyn PhysicalExpr>,
    /// Just `time`: the condition is evaluated on a stretch's two ends.
    schema: SchemaRef,
}

impl WindowCheck {
    fn new(state: &dyn Session, condition: &Expr) -> Result<Self> {
        let schema = Arc::new(Schema::new(vec![Field::new(TIME, time_type(), false)]));
        let df_schema = DFSchema::try_from(schema.clone())?;
        Ok(Self {
            condition: state
                .create_physical_expr(unnormalize_col(condition.clone()), &df_schema)?,
            schema,
        })
    }

    /// For each span (first, last µs, inclusive): whether the condition
    /// holds at both ends, hence (an interval, see `is_time_bound`) at every
    /// instant between. One evaluation for all spans.
    fn holds_throughout_each(&self, spans: &[(i64, i64)]) -> Result<Vec<bool>> {
        let ends = TimestampMicrosecondArray::from_iter_values(
            spans.iter().flat_map(|&(first, last)| [first, last]),
        )
        .with_timezone("UTC");
        let batch = RecordBatch::try_new(self.schema.clone(), vec![Arc::new(ends)])?;
        let v = self
            .condition
            .evaluate(&batch)?
            .into_array(2 * spans.len())?;
        let v = v.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal("a time condition did not give booleans".into())
        })?;
        let holds = |i: usize| v.is_valid(i) && v.value(i);
        Ok((0..spans.len())
            .map(|i| holds(2 * i) && holds(2 * i + 1))
            .collect())
    }

    fn holds_throughout(&self, p: Partition) -> Result<bool> {
        Ok(self.holds_throughout_each(&[(p.start_micros(), p.end_micros() - 1)])?[0])
    }
}

/// What a time window does to a file's row groups, from their `time` statistics.
#[derive(Debug, Default)]
struct RowGroupSplit {
    /// Every row inside the window: read without the filter.
    inside: Vec<usize>,
    /// Cut by the window, or without statistics: read and filtered.
    cut: Vec<usize>,
    /// No row inside: not read.
    outside: Vec<usize>,
}

/// Sorts `candidates` (row group indexes of `md`) by where their `time`
/// span lies against the window: `check` says "all inside", `range` (the
/// window's bounds) says "all outside".
fn split_row_groups(
    md: &ParquetMetaData,
    candidates: impl IntoIterator<Item = usize>,
    check: &WindowCheck,
    range: TimeRange,
) -> Result<RowGroupSplit> {
    let time = lookup::leaf(md, TIME);
    let mut split = RowGroupSplit::default();
    let mut spans = Vec::new();
    for g in candidates {
        let span = time
            .and_then(|c| md.row_group(g).column(c).statistics())
            .and_then(|s| match s {
                ParquetStatistics::Int64(v) => Some((*v.min_opt()?, *v.max_opt()?)),
                _ => None,
            });
        match span {
            None => split.cut.push(g),
            Some((min, max))
                if range.lo.is_some_and(|lo| max < lo) || range.hi.is_some_and(|hi| min > hi) =>
            {
                split.outside.push(g)
            }
            Some(span) => spans.push((g, span)),
        }
    }
    let ends: Vec<(i64, i64)> = spans.iter().map(|(_, s)| *s).collect();
    for ((g, _), inside) in spans.iter().zip(check.holds_throughout_each(&ends)?) {
        if inside {
            split.inside.push(*g);
        } else {
            split.cut.push(*g);
        }
    }
    Ok(split)
}

/// The bytes of `md`'s row groups `groups` (not empty): a file read
/// over this range reads those row groups (DataFusion assigns a row group to
/// the range holding its first byte), and DataFusion's repartitioning splits
/// the bytes to read, not the whole file.
fn byte_range(md: &ParquetMetaData, groups: &[usize]) -> (i64, i64) {
    let start = |g: usize| {
        let c = md.row_group(g).column(0);
        c.dictionary_page_offset()
            .unwrap_or_else(|| c.data_page_offset())
    };
    let first = groups.iter().map(|&g| start(g)).min().unwrap_or(0);
    let end = groups
        .iter()
        .map(|&g| start(g) + md.row_group(g).compressed_size())
        .max()
        .unwrap_or(0);
    (first, end.max(first + 1))
}

/// What planning did to row groups: time windows to those of the hours
/// they cut, lookups to those of the files they searched (metrics; tests
/// see the filter skipped and files not opened).
#[derive(Debug, Default)]
pub struct PlanCounts {
    inside: AtomicU64,
    cut: AtomicU64,
    outside: AtomicU64,
    lookup_kept: AtomicU64,
    lookup_ruled_out: AtomicU64,
}

/// A snapshot of [`PlanCounts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupCounts {
    /// Of an hour a window cuts, read without the time filter: every row inside.
    pub inside: u64,
    /// Of an hour a window cuts, read and filtered row by row.
    pub cut: u64,
    /// Of an hour a window cuts, not read: no row inside.
    pub outside: u64,
    /// Left to read by a lookup's statistics and bloom filters.
    pub lookup_kept: u64,
    /// Ruled out by a lookup's statistics and bloom filters: not read.
    pub lookup_ruled_out: u64,
}

impl PlanCounts {
    fn add_window(&self, s: &RowGroupSplit) {
        self.inside
            .fetch_add(s.inside.len() as u64, Ordering::Relaxed);
        self.cut.fetch_add(s.cut.len() as u64, Ordering::Relaxed);
        self.outside
            .fetch_add(s.outside.len() as u64, Ordering::Relaxed);
    }

    fn add_lookup(&self, kept: usize, ruled_out: usize) {
        self.lookup_kept.fetch_add(kept as u64, Ordering::Relaxed);
        self.lookup_ruled_out
            .fetch_add(ruled_out as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> RowGroupCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RowGroupCounts {
            inside: get(&self.inside),
            cut: get(&self.cut),
            outside: get(&self.outside),
            lookup_kept: get(&self.lookup_kept),
            lookup_ruled_out: get(&self.lookup_ruled_out),
        }
    }
}

/// Reads only `groups` of a file of `row_groups`.
fn access_plan(row_groups: usize, groups: impl IntoIterator<Item = usize>) -> ParquetAccessPlan {
    let mut plan = ParquetAccessPlan::new_none(row_groups);
    for g in groups {
        plan.scan(g);
    }
    plan
}

/// One Parquet scan of `files` of a table of `schema`, spread over the
/// session's partitions, through the engine's readers and statistics.
pub(crate) fn parquet_scan(
    sources: &TableSources,
    schema: &SchemaRef,
    state: &dyn Session,
    files: Vec<PartitionedFile>,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let n = state.config().target_partitions().max(1).min(files.len());
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
    for (i, mut f) in files.into_iter().enumerate() {
        let m = &f.object_meta;
        if let Some(s) = sources.stats.get(&m.location, m.size) {
            f = f.with_statistics(s);
        }
        groups[i % n].push(f);
    }
    let options = state.default_table_options().parquet;
    let hint = options.global.metadata_size_hint;
    let mut source = ParquetSource::new(TableSchema::from(schema.clone()))
        .with_table_parquet_options(options)
        .with_parquet_file_reader_factory(sources.readers.clone());
    if let Some(h) = hint {
        source = source.with_metadata_size_hint(h);
    }
    let config = FileScanConfigBuilder::new(sources.url.clone(), Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::from).collect())
        .with_projection_indices(projection)?
        .with_limit(limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// Those of `candidates` (row groups of `md`) that may hold a row every
/// lookup admits: by statistics, then by bloom filter (read through
/// `reader`, whose bloom filter cache makes a warm check free of I/O).
async fn admitted(
    reader: &mut (dyn AsyncFileReader + Send),
    md: &ParquetMetaData,
    candidates: Vec<usize>,
    lookups: &[Lookup],
) -> Result<Vec<usize>> {
    // A column this file lacks is left to the scan.
    let columns: Vec<(usize, &Lookup)> = lookups
        .iter()
        .filter_map(|l| Some((lookup::leaf(md, l.column)?, l)))
        .collect();
    let mut kept = Vec::with_capacity(candidates.len());
    'groups: for g in candidates {
        for &(c, l) in &columns {
            if !lookup::statistics_admit(md, g, c, &l.values) {
                continue 'groups;
            }
            let chunk = md.row_group(g).column(c);
            let at = chunk
                .bloom_filter_offset()
                .and_then(|o| u64::try_from(o).ok());
            let len = chunk
                .bloom_filter_length()
                .and_then(|l| u64::try_from(l).ok());
            if let (Some(at), Some(len)) = (at, len) {
                let filter = reader.get_bytes(at..at + len).await?;
                if !lookup::bloom_admits(&filter, &l.values) {
                    continue 'groups;
                }
            }
        }
        kept.push(g);
    }
    Ok(kept)
}

fn external(e: crate::LakeError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn timestamp(v: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(v),
        Some("UTC".into()),
    ))
}

#[async_trait]
impl TableProvider for HepTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Bounds on `time` the scan applies itself, and only to the hours at
        // the edges of the range: rows of an hour wholly inside it all match.
        // The rest are Inexact: they prune, and DataFusion filters rows.
        Ok(filters
            .iter()
            .map(|f| match is_time_bound(f) {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let tf = from_filters(filters);
        let window = (!tf.mentions_time).then_some(self.default_window);
        let range = match window {
            Some((from, to)) => TimeRange {
                lo: Some(from),
                hi: Some(to),
            },
            None => tf.range,
        };
        // The condition on `time` this scan owns: the default window, or the
        // query's bounds it reported Exact.
        let condition = match window {
            Some((from, to)) => Some(
                col(TIME)
                    .gt_eq(timestamp(from))
                    .and(col(TIME).lt_eq(timestamp(to))),
            ),
            None => conjunction(filters.iter().filter(|f| is_time_bound(f)).cloned()),
        };
        let check = condition
            .as_ref()
            .map(|c| WindowCheck::new(state, c))
            .transpose()?;
        let lookups = lookups(filters, self.hep_type);
        let mut listings = self.listings(range).await.map_err(external)?;
        // Newest first: "the latest N" (the default query) finds its rows in
        // the first files, and its TopK filter then rules out the rest from
        // their statistics without opening them.
        listings.sort_by_key(|l| std::cmp::Reverse(l.partition.hour));
        let (mut whole, mut to_plan) = (Vec::new(), Vec::new());
        for l in listings {
            let cut = match &check {
                Some(c) => !c.holds_throughout(l.partition)?,
                None => false,
            };
            // Newest first, as `visible` keeps them.
            let files = l.visible().iter().map(|m| self.scanned_file(m));
            if !cut && lookups.is_empty() {
                whole.extend(files.map(|(f, _)| f));
            } else {
                to_plan.extend(files.map(|(f, only)| (f, only, cut)));
            }
        }
        // Files of hours the window cuts, and every file a lookup searches:
        // row groups whose rows all lie inside the window join the unfiltered
        // scan, only those it cuts are filtered, and those the lookups rule
        // out are not read (a file left with none is not opened).
        let hint = state
            .default_table_options()
            .parquet
            .global
            .metadata_size_hint;
        let planned: Vec<_> = futures::stream::iter(to_plan)
            .map(|(f, only, cut)| {
                let window = check.as_ref().filter(|_| cut);
                self.plan_file(f, only, window, &lookups, range, hint)
            })
            .buffered(16)
            .try_collect()
            .await?;
        let mut edge = Vec::new();
        for (inside, cut) in planned {
            whole.extend(inside);
            edge.extend(cut);
        }

        let mut plans = Vec::new();
        if !whole.is_empty() {
            plans.push(self.parquet_scan(state, whole, projection.cloned(), limit)?);
        }
        if let (false, Some(condition)) = (edge.is_empty(), condition) {
            // The condition needs `time` even if the query does not select it.
            let time_idx = self.schema.index_of(TIME)?;
            let (scan_projection, keep) = match projection {
                Some(p) if !p.contains(&time_idx) => {
                    let mut q = p.clone();
                    q.push(time_idx);
                    (Some(q), Some(p.len()))
                }
                p => (p.cloned(), None),
            };
            // With a filter on top, the scan may not stop early.
            let mut plan = self.parquet_scan(state, edge, scan_projection, None)?;
            let df_schema = DFSchema::try_from(plan.schema())?;
            let predicate = state.create_physical_expr(unnormalize_col(condition), &df_schema)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
            if let Some(n) = keep {
                let schema = plan.schema();
                let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = (0..n)
                    .map(|i| {
                        let name = schema.field(i).name().clone();
                        (
                            Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                            name,
                        )
                    })
                    .collect();
                plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
            }
            plans.push(plan);
        }
        if plans.is_empty() {
            let all: Vec<usize> = (0..self.schema.fields().len()).collect();
            let schema = Arc::new(self.schema.project(projection.unwrap_or(&all))?);
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(plans)
    }
}
