//! `hep_<type>` as a DataFusion table: lists only the hour partitions the
//! query's time bounds allow, reads only visible files, and applies the
//! default "last 10 minutes" window when the query says nothing of `time`.
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::{col, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;

use crate::catalog::{list_partition, partitions};
use crate::paths::MICROS_PER_HOUR;
use crate::schema::{TIME, schema_for};
use crate::time_range::{TimeRange, from_filters};

#[derive(Debug)]
pub struct HepTable {
    hep_type: u8,
    schema: SchemaRef,
    store: Arc<dyn ObjectStore>,
    url: ObjectStoreUrl,
    /// The default window (µs, inclusive) for queries with no `time` condition.
    default_window: (i64, i64),
}

impl HepTable {
    pub fn new(
        hep_type: u8,
        store: Arc<dyn ObjectStore>,
        url: ObjectStoreUrl,
        default_window: (i64, i64),
    ) -> Self {
        Self {
            hep_type,
            schema: schema_for(hep_type),
            store,
            url,
            default_window,
        }
    }

    /// Visible files of every partition that can hold rows in `range`.
    async fn files(&self, range: TimeRange) -> crate::Result<Vec<PartitionedFile>> {
        let lo = range.lo.map(|v| v.div_euclid(MICROS_PER_HOUR));
        let hi = range.hi.map(|v| v.div_euclid(MICROS_PER_HOUR));
        if matches!((lo, hi), (Some(l), Some(h)) if l > h) {
            return Ok(vec![]);
        }
        let parts = partitions(&self.store, self.hep_type, lo, hi).await?;
        let listings: Vec<_> = futures::stream::iter(parts)
            .map(|p| list_partition(&self.store, p))
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(listings
            .iter()
            .flat_map(|l| l.visible())
            .map(PartitionedFile::from)
            .collect())
    }
}

fn external(e: crate::LakeError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
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
        // Inexact: we prune with them, DataFusion still filters rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
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
        let files = self.files(range).await.map_err(external)?;
        if files.is_empty() {
            let all: Vec<usize> = (0..self.schema.fields().len()).collect();
            let schema = Arc::new(self.schema.project(projection.unwrap_or(&all))?);
            return Ok(Arc::new(EmptyExec::new(schema)));
        }

        // The window filter needs `time` even if the query does not select it.
        let time_idx = self.schema.index_of(TIME)?;
        let (scan_projection, keep) = match (projection, window) {
            (Some(p), Some(_)) if !p.contains(&time_idx) => {
                let mut q = p.clone();
                q.push(time_idx);
                (Some(q), Some(p.len()))
            }
            (p, _) => (p.cloned(), None),
        };

        let n = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n.min(files.len())];
        let group_count = groups.len();
        for (i, f) in files.into_iter().enumerate() {
            groups[i % group_count].push(f);
        }
        let format = ParquetFormat::default().with_options(state.default_table_options().parquet);
        let source = format.file_source(TableSchema::from(self.schema.clone()));
        let config = FileScanConfigBuilder::new(self.url.clone(), source)
            .with_file_groups(groups.into_iter().map(FileGroup::from).collect())
            .with_projection_indices(scan_projection)?
            // With our own filter on top, the scan may not stop early.
            .with_limit(if window.is_some() { None } else { limit })
            .build();
        let mut plan = format.create_physical_plan(state, config).await?;

        if let Some((from, to)) = window {
            let df_schema = DFSchema::try_from(plan.schema())?;
            let ts = |v: i64| {
                lit(ScalarValue::TimestampMicrosecond(
                    Some(v),
                    Some("UTC".into()),
                ))
            };
            let predicate = state.create_physical_expr(
                col(TIME).gt_eq(ts(from)).and(col(TIME).lt_eq(ts(to))),
                &df_schema,
            )?;
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
        }
        Ok(plan)
    }
}
