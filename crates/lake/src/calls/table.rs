//! `calls` as a DataFusion table: the record files the `calls` Delta table
//! holds, in the hours a query's bounds on `start_time` allow (every hour
//! when it names none: records are small, and a search over the whole
//! retention is what the table is for). Other conditions are pushed into the
//! Parquet scan, whose statistics and bloom filters rule files out.
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::col;

use crate::paths::MICROS_PER_HOUR;
use crate::schema::{START_TIME, TIME, calls_query_schema};
use crate::table::TableSources;
use crate::time_range::from_filters;

#[derive(Debug)]
pub struct CallRecords {
    schema: SchemaRef,
    sources: TableSources,
}

impl CallRecords {
    pub fn new(sources: TableSources) -> Self {
        Self {
            schema: calls_query_schema(),
            sources,
        }
    }
}

/// `e` with `start_time` read as `time`, so the lake's reading of time
/// bounds ([`from_filters`]) applies to it.
fn as_time_bound(e: &Expr) -> Expr {
    e.clone()
        .transform(|e| match e {
            Expr::Column(c) if c.name == START_TIME => Ok(Transformed::yes(col(TIME))),
            Expr::Column(c) if c.name == TIME => {
                // A column named `time` here is not the start: no bound.
                Ok(Transformed::yes(col("not a time column")))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| e.clone())
}

#[async_trait]
impl TableProvider for CallRecords {
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
        // They choose hours and prune files; DataFusion filters the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds: Vec<Expr> = filters.iter().map(as_time_bound).collect();
        let range = from_filters(&bounds).range;
        let (lo, hi) = (
            range.lo.map(|v| v.div_euclid(MICROS_PER_HOUR)),
            range.hi.map(|v| v.div_euclid(MICROS_PER_HOUR)),
        );
        let held = self
            .sources
            .listings
            .calls()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // Newest first: a search wants the latest calls.
        let files: Vec<PartitionedFile> = held
            .iter()
            .rev()
            .filter(|(h, _)| lo.is_none_or(|lo| **h >= lo) && hi.is_none_or(|hi| **h <= hi))
            .flat_map(|(_, files)| files.iter().cloned().map(PartitionedFile::from))
            .collect();
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        crate::table::parquet_scan(
            &self.sources,
            &self.schema,
            state,
            files,
            projection.cloned(),
            limit,
        )
    }
}
