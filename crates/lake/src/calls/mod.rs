//! The `calls` table: one row per call, searchable over the whole retention.
//!
//! Records are built from the lake's SIP rows by the compaction run (server
//! and compactor function alike), one file per hour: the calls whose first
//! INVITE is in hour H, from the SIP rows of H and of the `follow_hours`
//! after it (a call's later messages), and of H − 1 (a call that began there
//! is that hour's). An hour is built once all those hours are closed, and
//! built again whenever what they hold changes (late messages, a Kinesis
//! retry, a compaction): the file is named after a fingerprint of the
//! visible files of its sources ([`RecordsFile`]), so an hour whose sources
//! did not change costs a listing and nothing else.
//!
//! **Exactly once.** The `calls` Delta table (`calls/_delta_log`) is the
//! table's source of truth, for HEPop's engine and for Athena, DuckDB or
//! Spark alike: a build commits, in one Delta commit, the new file of its
//! hour and the removal of the one it replaces, with a transaction action
//! per hour (`hepop-calls:date=…/hour=…`), so two builders of one hour
//! conflict in Delta's own check and the loser builds again from the
//! table's new state. A call belongs to one hour (its first INVITE's), and
//! an hour has one file in force: each call is one row, whatever is rebuilt.
//! Replaced files are deleted a grace period after their removal.
//!
//! A call whose messages continue past `follow_hours` after its hour is
//! recorded with the messages up to then.
pub mod build;
pub mod rtcp;
pub mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hasher;
use std::sync::Arc;

use deltalake_core::DeltaTable;
use deltalake_core::kernel::{Action, Transaction};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::catalog::{PartitionListing, list_partition_in};
use crate::delta::{
    add_missing_columns, add_to_hour, columns_of, commit_actions, create_table, delta_error,
    load_table, remove_from_hour, time_stats_of,
};
use crate::parquet_io::{PAGE_ROWS, StoreReader};
use crate::paths::{
    MICROS_PER_HOUR, Partition, RecordsFile, Root, TypeSet, bundle_row_group, date_dir, hour_dir,
};
use crate::schema::{
    CALLS_BLOOM_COLUMNS, CALLS_TABLE, CALLS_TIME_COLUMNS, RTCP_TYPE, SIP_TYPE, START_TIME,
    calls_schema, conform, schema_for,
};
use crate::{LakeError, Result};

use build::{
    HourRecords, Leg, RTCP_COLUMNS, Reports, SOURCE_COLUMNS, began, fold, fold_rtcp, to_batch,
};

/// Bumped when what a record holds changes: every hour is then built again.
const BUILD_VERSION: u64 = 2;

/// How records are built (the compaction run's settings).
#[derive(Debug, Clone, Copy)]
pub struct CallsConfig {
    /// Hours after a call's first hour whose messages its record holds.
    pub follow_hours: i64,
    /// An hour is closed this long after it ends (late messages still arrive).
    pub close_after_micros: i64,
    /// Replaced record files stay this long, for queries that loaded the table before.
    pub grace_micros: i64,
    /// The most `hep_1` Parquet bytes one hour's build may read: what it holds
    /// grows with them (about 4.5 bytes of memory a byte, docs/PERFORMANCE.md).
    pub max_source_bytes: u64,
}

/// What one run did to the `calls` table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallsReport {
    /// Hours whose records were (re)built and committed.
    pub hours_built: usize,
    /// Records those hours hold.
    pub records: usize,
    /// Hours whose sources had not changed.
    pub hours_current: usize,
    /// Hours not built: their sources are more than a build may read.
    pub hours_too_large: usize,
    /// Replaced or abandoned record files deleted.
    pub deleted: usize,
    pub errors: Vec<crate::compact::RunError>,
}

/// The last hour whose records can be built at `now`: it and the hours
/// after it that its calls may reach are closed.
pub fn last_settled_hour(cfg: &CallsConfig, now_micros: i64) -> i64 {
    (now_micros - cfg.close_after_micros).div_euclid(MICROS_PER_HOUR) - cfg.follow_hours - 1
}

/// The `calls` Delta table.
pub struct CallsTable {
    table: DeltaTable,
}

/// The records file at `path`, relative to the table's root as Delta names it.
fn records_file(path: &str) -> Option<RecordsFile> {
    RecordsFile::parse(&Path::from(format!("{CALLS_TABLE}/{path}")))
}

fn app_id(hour: i64) -> String {
    format!("hepop-calls:{}/{}", date_dir(hour), hour_dir(hour))
}

impl CallsTable {
    /// Loads the table, if it exists.
    pub async fn load(store: &Arc<dyn ObjectStore>) -> Result<Option<Self>> {
        Ok(load_table(store, Root::Calls)
            .await?
            .map(|table| Self { table }))
    }

    /// Loads the table, creating it if absent and adding the columns
    /// records have gained since.
    pub async fn open(store: &Arc<dyn ObjectStore>) -> Result<Self> {
        let columns = columns_of(&calls_schema())?;
        let table = match Self::load(store).await? {
            Some(t) => add_missing_columns(t.table, columns).await?,
            None => create_table(store, Root::Calls, CALLS_TABLE, columns, START_TIME).await?,
        };
        Ok(Self { table })
    }

    /// The record files the table holds, by hour, with their sizes.
    pub fn held(&self) -> Result<BTreeMap<i64, Vec<(RecordsFile, u64)>>> {
        let mut out: BTreeMap<i64, Vec<(RecordsFile, u64)>> = BTreeMap::new();
        for f in self
            .table
            .snapshot()
            .map_err(delta_error)?
            .log_data()
            .iter()
        {
            if let Some(r) = records_file(&f.path()) {
                out.entry(r.hour).or_default().push((r, f.size() as u64));
            }
        }
        Ok(out)
    }

    /// Files removed from the table, with when (µs).
    async fn removed(&self) -> Result<Vec<(RecordsFile, Option<i64>)>> {
        let log_store = self.table.log_store();
        let tombstones: Vec<(String, Option<i64>)> = self
            .table
            .snapshot()
            .map_err(delta_error)?
            .all_tombstones(log_store.as_ref())
            .map_ok(|t| (t.path().into_owned(), t.deletion_timestamp()))
            .try_collect()
            .await
            .map_err(delta_error)?;
        Ok(tombstones
            .into_iter()
            .filter_map(|(p, ms)| Some((records_file(&p)?, ms.map(|ms| ms * 1000))))
            .collect())
    }

    /// The version of hour `hour`'s transaction: how many times it was built.
    async fn builds(&self, hour: i64) -> Result<Option<i64>> {
        let log_store = self.table.log_store();
        self.table
            .snapshot()
            .map_err(delta_error)?
            .transaction_version(log_store.as_ref(), app_id(hour))
            .await
            .map_err(delta_error)
    }

    /// Whether hour `hour` was ever built (its transaction is set).
    pub async fn built(&self, hour: i64) -> Result<bool> {
        Ok(self.builds(hour).await?.is_some())
    }

    async fn reload(&mut self) -> Result<()> {
        self.table.update_state().await.map_err(delta_error)
    }

    /// The actions replacing hour `hour`'s files `remove` by `add` (none:
    /// the hour has no calls), with the hour's transaction moved on: two
    /// commits of one hour from one version conflict (`delta::is_conflict`).
    async fn replacing(
        &self,
        hour: i64,
        add: Option<(&ObjectMeta, String)>,
        remove: &[RecordsFile],
        now_micros: i64,
    ) -> Result<Vec<Action>> {
        let now_ms = now_micros / 1000;
        let version = self.builds(hour).await?.unwrap_or(0);
        let mut actions: Vec<Action> = add
            .map(|(meta, stats)| add_to_hour(hour, meta, stats, true))
            .into_iter()
            .collect();
        actions.extend(
            remove
                .iter()
                .map(|r| remove_from_hour(hour, &r.name(), now_ms, true)),
        );
        actions.push(Action::Txn(Transaction::new_with_last_update(
            app_id(hour),
            version + 1,
            Some(now_ms),
        )));
        Ok(actions)
    }

    async fn commit(&mut self, actions: Vec<Action>) -> Result<u64> {
        commit_actions(&mut self.table, actions).await
    }
}

/// The listings a build reads (`hep_1`, and `hep_5` for RTCP): those the
/// compaction run took (after compacting), and the others listed once when
/// first needed.
#[derive(Debug, Default)]
pub struct SourceListings {
    listed: HashMap<Partition, Arc<PartitionListing>>,
    /// Partitions that failed in this run (already reported).
    failed: HashSet<Partition>,
    /// The tables the lake has: a partition of another is empty, unlisted.
    tables: HashSet<u8>,
    /// Every partition with rows is in `listed` or `failed`: a full sweep
    /// that listed every day without error. Other partitions are empty.
    complete: bool,
}

/// Why an hour's records were not built.
enum Skip {
    /// A source partition failed earlier in the run, which reported it.
    SourceFailed,
    /// The sources hold this many bytes, more than a build may read.
    TooLarge(u64),
    Error(LakeError),
}

impl From<LakeError> for Skip {
    fn from(e: LakeError) -> Self {
        Self::Error(e)
    }
}

impl SourceListings {
    /// `listings`: partitions as the run left them; `failed`: those it could
    /// not compact; `tables`: the tables the lake has; `complete`: see
    /// [`Self::complete`].
    pub fn new(
        listings: impl IntoIterator<Item = PartitionListing>,
        failed: impl IntoIterator<Item = Partition>,
        tables: impl IntoIterator<Item = u8>,
        complete: bool,
    ) -> Self {
        let source = |p: &Partition| [SIP_TYPE, RTCP_TYPE].contains(&p.hep_type);
        Self {
            listed: listings
                .into_iter()
                .filter(|l| source(&l.partition))
                .map(|l| (l.partition, Arc::new(l)))
                .collect(),
            failed: failed.into_iter().filter(source).collect(),
            tables: tables.into_iter().collect(),
            complete,
        }
    }

    /// The hours with SIP rows this holds.
    fn sip_hours(&self) -> impl Iterator<Item = i64> + '_ {
        self.listed
            .iter()
            .filter(|(p, l)| p.hep_type == SIP_TYPE && !l.visible().is_empty())
            .map(|(p, _)| p.hour)
    }

    /// The listing of table `hep_type`'s hour `hour`.
    async fn get(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        sets: &[TypeSet],
        hep_type: u8,
        hour: i64,
    ) -> std::result::Result<Arc<PartitionListing>, Skip> {
        let p = Partition { hep_type, hour };
        if self.failed.contains(&p) {
            return Err(Skip::SourceFailed);
        }
        if let Some(l) = self.listed.get(&p) {
            return Ok(l.clone());
        }
        let l = if self.complete || !self.tables.contains(&p.hep_type) {
            PartitionListing::new(p, vec![], vec![], vec![], Default::default())
        } else {
            list_partition_in(store, p, sets).await?
        };
        let l = Arc::new(l);
        self.listed.insert(p, l.clone());
        Ok(l)
    }
}

/// The fingerprint of an hour's sources: what its records are built from.
fn fingerprint(cfg: &CallsConfig, hour: i64, sources: &[Arc<PartitionListing>]) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(0);
    for v in [BUILD_VERSION, cfg.follow_hours as u64, hour as u64] {
        h.write_u64(v);
    }
    for l in sources {
        h.write_u8(l.partition.hep_type);
        h.write_u64(l.partition.hour as u64);
        let mut files: Vec<(&str, u64)> = l
            .visible()
            .iter()
            .map(|m| (m.location.as_ref(), m.size))
            .collect();
        files.sort_unstable();
        h.write_u64(files.len() as u64);
        for (name, size) in files {
            h.write(name.as_bytes());
            h.write_u8(0);
            h.write_u64(size);
        }
    }
    h.finish()
}

/// The rows of table `hep_type` in one visible file, only `columns` (a
/// file written before a column was added reads it as null), batch by batch.
async fn read_columns(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    hep_type: u8,
    columns: &[&str],
    mut each: impl FnMut(&arrow::array::RecordBatch) -> Result<()>,
) -> Result<()> {
    let reader = StoreReader::new(store.clone(), meta.location.clone(), meta.size);
    let mut builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .with_batch_size(64 * 1024);
    let present: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| builder.schema().column_with_name(c).is_some())
        .collect();
    let mask = ProjectionMask::columns(builder.parquet_schema(), present.iter().copied());
    builder = builder.with_projection(mask);
    if let Some((row_group, _)) = bundle_row_group(&meta.location, hep_type) {
        builder = builder.with_row_groups(vec![row_group]);
    }
    let table = schema_for(hep_type);
    let schema = Arc::new(
        table.project(
            &columns
                .iter()
                .map(|c| table.index_of(c))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        )?,
    );
    let mut batches = builder.build()?;
    while let Some(b) = batches.try_next().await? {
        each(&conform(&b, &schema)?)?;
    }
    Ok(())
}

/// The legs of a `hep_1` partition's visible files.
async fn legs_of(
    store: &Arc<dyn ObjectStore>,
    l: &PartitionListing,
) -> Result<HashMap<String, Leg>> {
    let mut legs = HashMap::new();
    for meta in l.visible() {
        read_columns(store, meta, SIP_TYPE, &SOURCE_COLUMNS, |b| {
            fold(&mut legs, b)
        })
        .await?;
    }
    Ok(legs)
}

/// The RTCP reports of a `hep_5` partition's visible files.
async fn reports_of(store: &Arc<dyn ObjectStore>, l: &PartitionListing) -> Result<Reports> {
    let mut reports = Reports::new();
    for meta in l.visible() {
        read_columns(store, meta, RTCP_TYPE, &RTCP_COLUMNS, |b| {
            fold_rtcp(&mut reports, b)
        })
        .await?;
    }
    Ok(reports)
}

/// Parquet bytes of one hour's records: zstd at compaction's level, page
/// statistics, bloom filters on what a search looks calls up by, and the
/// times delta-encoded (nearly every value differs: a dictionary saves
/// nothing, while records in start order differ little from one another).
fn encode(batch: &arrow::array::RecordBatch) -> Result<bytes::Bytes> {
    let mut p = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(9)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS);
    for c in CALLS_TIME_COLUMNS {
        p = p
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    let ndv = batch.num_rows().clamp(16, 1 << 20) as u64;
    for c in CALLS_BLOOM_COLUMNS {
        p = p
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_bloom_filter_enabled(ColumnPath::from(c), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(c), 0.01)
            .set_column_bloom_filter_max_ndv(ColumnPath::from(c), ndv);
    }
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(p.build()))?;
    w.write(batch)?;
    w.close()?;
    Ok(bytes::Bytes::from(buf))
}

/// Which hours a run builds.
#[derive(Debug, Clone, Copy)]
pub enum Builds {
    /// Hours in this range never built yet: those that settled since the
    /// last run (a recent run; late data waits for a full sweep).
    Settling { from_hour: i64 },
    /// Every hour with SIP rows whose sources changed since it was built,
    /// and the clean-up of replaced files (a full sweep).
    Changed,
}

fn failed(of: impl std::fmt::Display, e: impl std::fmt::Display) -> crate::compact::RunError {
    crate::compact::RunError::new(crate::compact::Step::CallRecords, of, e)
}

/// Builds the records of the hours `builds` names that have settled, and
/// commits each; see the module's documentation.
pub async fn build(
    store: &Arc<dyn ObjectStore>,
    sets: &[TypeSet],
    cfg: &CallsConfig,
    mut sources: SourceListings,
    builds: Builds,
    now_micros: impl Fn() -> i64,
) -> CallsReport {
    let mut report = CallsReport::default();
    let mut table = match CallsTable::open(store).await {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(failed(CALLS_TABLE, e));
            return report;
        }
    };
    let last = last_settled_hour(cfg, now_micros());
    let hours: Vec<i64> = match builds {
        Builds::Settling { from_hour } => {
            let mut unbuilt = Vec::new();
            let held = table.held().unwrap_or_default();
            for hour in from_hour..=last {
                match table.built(hour).await {
                    Ok(built) if built || held.contains_key(&hour) => {}
                    Ok(_) => unbuilt.push(hour),
                    Err(e) => report.errors.push(failed(CALLS_TABLE, e)),
                }
            }
            unbuilt
        }
        Builds::Changed => {
            let mut hours: Vec<i64> = sources.sip_hours().filter(|h| *h <= last).collect();
            hours.sort_unstable();
            hours
        }
    };
    for hour in hours {
        let built = build_hour(
            store,
            sets,
            &mut table,
            &mut sources,
            cfg,
            hour,
            &now_micros,
        );
        match built.await {
            Ok(Some(n)) => {
                report.hours_built += 1;
                report.records += n;
            }
            Ok(None) => report.hours_current += 1,
            Err(Skip::SourceFailed) => {}
            Err(Skip::TooLarge(bytes)) => {
                report.hours_too_large += 1;
                tracing::warn!(
                    hour = %Root::Calls.hour_prefix(hour),
                    source_mb = bytes >> 20,
                    limit_mb = cfg.max_source_bytes >> 20,
                    "call records not built: the hour's SIP rows are more than a build may hold \
                     in the compaction memory (raise --compact-memory-mb / HEPOP_COMPACT_MEMORY_MB)"
                );
            }
            Err(Skip::Error(e)) => {
                tracing::warn!(hour, error = %e, "building call records failed");
                report.errors.push(failed(Root::Calls.hour_prefix(hour), e));
            }
        }
    }
    if matches!(builds, Builds::Changed) {
        match clean_up(store, &table, cfg, now_micros()).await {
            Ok(n) => report.deleted += n,
            Err(e) => report.errors.push(crate::compact::RunError::new(
                crate::compact::Step::CleanUp,
                CALLS_TABLE,
                e,
            )),
        }
    }
    report
}

/// Builds and commits the records of `hour` unless its file is current;
/// Some(records) when it committed.
async fn build_hour(
    store: &Arc<dyn ObjectStore>,
    sets: &[TypeSet],
    table: &mut CallsTable,
    sources: &mut SourceListings,
    cfg: &CallsConfig,
    hour: i64,
    now_micros: &impl Fn() -> i64,
) -> std::result::Result<Option<usize>, Skip> {
    let mut listings = Vec::new();
    for h in hour - 1..=hour + cfg.follow_hours {
        listings.push(sources.get(store, sets, SIP_TYPE, h).await?);
    }
    let mut rtcp = Vec::new();
    for h in hour..=hour + cfg.follow_hours {
        rtcp.push(sources.get(store, sets, RTCP_TYPE, h).await?);
    }
    let sip_bytes: u64 = listings
        .iter()
        .flat_map(|l| l.visible())
        .map(|m| m.size)
        .sum();
    let all: Vec<Arc<PartitionListing>> = listings.iter().chain(&rtcp).cloned().collect();
    let file = RecordsFile {
        hour,
        fingerprint: fingerprint(cfg, hour, &all),
    };
    // A conflict means another build of the hour committed first: read the
    // table again and decide anew.
    for _ in 0..4 {
        let held: Vec<RecordsFile> = table
            .held()?
            .remove(&hour)
            .unwrap_or_default()
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        // An hour without SIP rows holds no file; one with SIP rows holds
        // one, with no rows if none of them began a call.
        let empty = listings[1].visible().is_empty();
        let current = match empty {
            false => held == [file],
            true => held.is_empty() && table.built(hour).await?,
        };
        if current {
            return Ok(None);
        }
        // Only a build that would read them is bounded by them.
        if sip_bytes > cfg.max_source_bytes {
            return Err(Skip::TooLarge(sip_bytes));
        }
        let records = if empty {
            Vec::new()
        } else {
            let earlier = began(&legs_of(store, &listings[0]).await?);
            let mut hour_records = HourRecords::new(hour, legs_of(store, &listings[1]).await?);
            for later in &listings[2..] {
                hour_records.follow(legs_of(store, later).await?);
            }
            for l in &rtcp {
                hour_records.rtcp(reports_of(store, l).await?);
            }
            hour_records.finish(&earlier)
        };
        let add = if empty {
            None
        } else {
            let bytes = encode(&to_batch(&records)?)?;
            let size = bytes.len() as u64;
            crate::parquet_io::put(store, &file.path(), bytes).await?;
            let meta = ObjectMeta {
                location: file.path(),
                last_modified: chrono::Utc::now(),
                size,
                e_tag: None,
                version: None,
            };
            let range = records
                .first()
                .zip(records.last())
                .map(|(a, b)| (a.start, b.start));
            Some((meta, time_stats_of(START_TIME, records.len() as i64, range)))
        };
        let remove: Vec<RecordsFile> = held.into_iter().filter(|r| *r != file).collect();
        let add = add.as_ref().map(|(m, s)| (m, s.clone()));
        // Even an hour without calls commits its transaction: built once.
        let actions = table.replacing(hour, add, &remove, now_micros()).await?;
        match table.commit(actions).await {
            Ok(_) => return Ok(Some(records.len())),
            Err(e) if crate::delta::is_conflict(&e) => table.reload().await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(LakeError::Other(format!("hour {hour}: other builds kept committing first")).into())
}

/// Deletes the record files the table removed more than a grace period
/// ago (and does not hold again), from its tombstones: no LIST, and S3 does
/// not bill DELETEs. A file a crashed build wrote and never committed stays
/// until retention deletes its hour. Returns how many were deleted.
async fn clean_up(
    store: &Arc<dyn ObjectStore>,
    table: &CallsTable,
    cfg: &CallsConfig,
    now_micros: i64,
) -> Result<usize> {
    let held: HashSet<RecordsFile> = table
        .held()?
        .into_values()
        .flatten()
        .map(|(r, _)| r)
        .collect();
    let mut deleted = 0;
    for (r, at) in table.removed().await? {
        let due = at.is_some_and(|at| at <= now_micros - cfg.grace_micros);
        if due && !held.contains(&r) {
            match store.delete(&r.path()).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}

/// Deletes every object of `hours` of the `calls` table; returns (hours, objects).
pub async fn delete_hours(store: &Arc<dyn ObjectStore>, hours: &[i64]) -> Result<(usize, usize)> {
    let mut objects = 0;
    for hour in hours {
        let all: Vec<Path> = store
            .list(Some(&Root::Calls.hour_prefix(*hour)))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        for path in all {
            match store.delete(&path).await {
                Ok(()) => objects += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok((hours.len(), objects))
}

/// Removes the hours before `first_kept` from the table in one commit
/// (retention), before their objects are deleted. Returns those hours.
pub async fn expire(
    store: &Arc<dyn ObjectStore>,
    first_kept: i64,
    now_micros: i64,
) -> Result<Vec<i64>> {
    let Some(mut table) = CallsTable::load(store).await? else {
        return Ok(vec![]);
    };
    let expired: Vec<(i64, Vec<RecordsFile>)> = table
        .held()?
        .range(..first_kept)
        .map(|(h, files)| (*h, files.iter().map(|(r, _)| *r).collect()))
        .collect();
    let mut actions = Vec::new();
    for (hour, remove) in &expired {
        actions.extend(table.replacing(*hour, None, remove, now_micros).await?);
    }
    if !actions.is_empty() {
        table.commit(actions).await?;
    }
    Ok(expired.into_iter().map(|(h, _)| h).collect())
}
