//! `hep_<type>` as a DataFusion table: lists only the hour partitions the
//! query's time bounds allow, reads only visible files, applies the default
//! "last 10 minutes" window when the query says nothing of `time`, and
//! filters by time only the hours the range cuts: a row's hour partition is
//! the hour of its `time` (`paths::Partition::for_micros`).
use std::sync::Arc;

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
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{col, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;

use crate::catalog::{PartitionListing, partitions};
use crate::listing_cache::ListingCache;
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

    /// A visible file as the scan reads it: of a bundle, only this table's row group.
    fn scanned_file(&self, meta: &ObjectMeta) -> PartitionedFile {
        let file = PartitionedFile::from(meta.clone());
        match bundle_row_group(&meta.location, self.hep_type) {
            Some((row_group, row_groups)) => {
                let mut plan = ParquetAccessPlan::new_none(row_groups);
                plan.scan(row_group);
                file.with_extension(plan)
            }
            None => file,
        }
    }

    /// One Parquet scan of `files`, spread over the session's partitions.
    fn parquet_scan(
        &self,
        state: &dyn Session,
        files: Vec<PartitionedFile>,
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let n = state.config().target_partitions().max(1).min(files.len());
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
        for (i, mut f) in files.into_iter().enumerate() {
            let m = &f.object_meta;
            if let Some(s) = self.sources.stats.get(&m.location, m.size) {
                f = f.with_statistics(s);
            }
            groups[i % n].push(f);
        }
        let options = state.default_table_options().parquet;
        let hint = options.global.metadata_size_hint;
        let mut source = ParquetSource::new(TableSchema::from(self.schema.clone()))
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(self.sources.readers.clone());
        if let Some(h) = hint {
            source = source.with_metadata_size_hint(h);
        }
        let config = FileScanConfigBuilder::new(self.sources.url.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::from).collect())
            .with_projection_indices(projection)?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// Decides, hour by hour, whether a condition on `time` holds for all of it.
struct HourCheck {
    condition: Arc<dyn PhysicalExpr>,
    /// Just `time`: the condition is evaluated on an hour's two ends.
    schema: SchemaRef,
}

impl HourCheck {
    fn new(state: &dyn Session, condition: &Expr) -> Result<Self> {
        let schema = Arc::new(Schema::new(vec![Field::new(TIME, time_type(), false)]));
        let df_schema = DFSchema::try_from(schema.clone())?;
        Ok(Self {
            condition: state
                .create_physical_expr(unnormalize_col(condition.clone()), &df_schema)?,
            schema,
        })
    }

    /// True when the condition holds at the hour's first and last
    /// microsecond, hence (an interval, see `is_time_bound`) throughout.
    fn holds_throughout(&self, p: Partition) -> Result<bool> {
        let ends = TimestampMicrosecondArray::from(vec![p.start_micros(), p.end_micros() - 1])
            .with_timezone("UTC");
        let batch = RecordBatch::try_new(self.schema.clone(), vec![Arc::new(ends)])?;
        let v = self.condition.evaluate(&batch)?.into_array(2)?;
        let v = v.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal("a time condition did not give booleans".into())
        })?;
        Ok(Array::null_count(v) == 0 && v.true_count() == 2)
    }
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
            .map(|c| HourCheck::new(state, c))
            .transpose()?;
        let (mut whole, mut edge) = (Vec::new(), Vec::new());
        let mut listings = self.listings(range).await.map_err(external)?;
        // Newest first: "the latest N" (the default query) finds its rows in
        // the first files, and its TopK filter then rules out the rest from
        // their statistics without opening them.
        listings.sort_by_key(|l| std::cmp::Reverse(l.partition.hour));
        for l in listings {
            // Newest first, as `visible` keeps them.
            let files = l.visible().iter().map(|m| self.scanned_file(m));
            match &check {
                Some(c) if !c.holds_throughout(l.partition)? => edge.extend(files),
                _ => whole.extend(files),
            }
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
