//! The lake's public face: one Delta Lake table per HEP type, at the table's
//! own directory (`hep_<type>/_delta_log/`), partitioned by `date` and `hour`.
//! Athena, DuckDB, Polars and Spark read it as it is and see each stored row
//! exactly once.
//!
//! The per-hour compaction log stays the source of truth: ingest never
//! touches Delta, and a compaction run mirrors into it what is final
//! ([`PartitionMirror::of`]): the files HEPop's reader sees, less bundles
//! (several tables' rows in one file) and Kinesis attempts not yet settled
//! (a retry may still supersede them). Compaction turns those into files of
//! their own within a run or two, which bounds the lag.
//!
//! Each commit sets, per partition it changes, a Delta application
//! transaction (`txn`, app id `hepop:<date>/<hour>`) to the compaction log
//! entry it mirrored. A mirror from an older entry than the table has seen
//! leaves that partition alone, and two mirrors of one partition conflict in
//! Delta's own conflict check (`ConcurrentTransaction`) and mirror again from
//! the table's new state. Retention commits the removal of an hour with the
//! transaction at [`EXPIRED`], before its objects are deleted.
//!
//! Log writing, checkpoints, expired-log clean-up and conflict checks are
//! delta-rs's. Deleting the files a commit removed stays with compaction's
//! clean-up (a grace period after their removal, [`PublicTable::pinned`]): the
//! lake holds files Delta must not reference yet, which a vacuum would delete.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{
    Action, Add, DataType as DeltaType, PrimitiveType, Remove, StructField, Transaction,
};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::statistics::Statistics;

use crate::catalog::{PartitionListing, file_name};
use crate::parquet_io::StoreReader;
use crate::paths::{BundleHour, FileName, Partition, Root, date_dir, hour_dir};
use crate::schema::{TIME, schema_for, table_name};
use crate::spans::Frontier;
use crate::{LakeError, Result};

pub const DATE_COLUMN: &str = "date";
pub const HOUR_COLUMN: &str = "hour";

/// The transaction version of an expired hour: no mirror adds to it again.
pub const EXPIRED: i64 = i64::MAX;

/// A file absent from a listing is gone (deleted, quarantined) only if it is
/// older than the listing by this much: store and compactor clocks differ.
const CLOCK_MARGIN_MICROS: i64 = 60_000_000;

/// Table properties: a checkpoint every 50 commits; commits older than two
/// days removed after a checkpoint (time travel is not what the table is for);
/// removed files' tombstones kept a day (compaction deletes them after its
/// grace period); statistics on `time` only, which keeps checkpoints small.
const TABLE_PROPERTIES: [(&str, &str); 4] = [
    ("delta.checkpointInterval", "50"),
    ("delta.logRetentionDuration", "interval 2 days"),
    ("delta.deletedFileRetentionDuration", "interval 1 days"),
    ("delta.setTransactionRetentionDuration", "interval 3 days"),
];
const STATS_COLUMNS: &str = "delta.dataSkippingStatsColumns";

pub(crate) fn delta_error(e: DeltaTableError) -> LakeError {
    LakeError::Delta(Box::new(e))
}

/// Whether a commit failed because another one came first (mirror again).
pub fn is_conflict(e: &LakeError) -> bool {
    use deltalake_core::kernel::transaction::TransactionError as T;
    matches!(e, LakeError::Delta(d) if matches!(**d,
        DeltaTableError::Transaction { source: T::CommitConflict(_) | T::MaxCommitAttempts(_) }
        | DeltaTableError::VersionAlreadyExists(_)))
}

/// The path of a data file relative to its table's root, as Delta names it.
pub fn relative_path(p: Partition, name: &str) -> String {
    hour_path(p.hour, name)
}

/// The path of file `name` of hour `hour` relative to a table's root.
pub fn hour_path(hour: i64, name: &str) -> String {
    format!("{}/{}/{name}", date_dir(hour), hour_dir(hour))
}

/// The partition and file name of a path relative to table `hep_type`'s root.
pub fn parse_relative_path(hep_type: u8, path: &str) -> Option<(Partition, String)> {
    let full = object_store::path::Path::from(format!("{}/{path}", table_name(hep_type)));
    let p = Partition::parse(&full)?;
    Some((p, full.filename()?.to_owned()))
}

/// Delta transaction app id of a partition.
pub fn app_id(p: Partition) -> String {
    format!("hepop:{}/{}", date_dir(p.hour), hour_dir(p.hour))
}

/// The values of the `date` and `hour` partition columns of an hour.
pub fn partition_values(hour: i64) -> HashMap<String, Option<String>> {
    let date = date_dir(hour);
    let date = date.trim_start_matches("date=").to_owned();
    HashMap::from([
        (DATE_COLUMN.to_owned(), Some(date)),
        (
            HOUR_COLUMN.to_owned(),
            Some(hour.rem_euclid(24).to_string()),
        ),
    ])
}

/// The Delta columns of a table: the lake's schema, then `date` and `hour`.
pub fn columns(hep_type: u8) -> Result<Vec<StructField>> {
    columns_of(&schema_for(hep_type))
}

/// The Delta columns of `schema`, then `date` and `hour`.
pub fn columns_of(schema: &arrow::datatypes::Schema) -> Result<Vec<StructField>> {
    use arrow::datatypes::DataType as A;
    let mut out = Vec::new();
    for f in schema.fields() {
        let t = match f.data_type() {
            A::Utf8 | A::LargeUtf8 | A::Utf8View => PrimitiveType::String,
            A::Int32 => PrimitiveType::Integer,
            A::Int64 => PrimitiveType::Long,
            A::Boolean => PrimitiveType::Boolean,
            A::Float64 => PrimitiveType::Double,
            A::Timestamp(_, Some(_)) => PrimitiveType::Timestamp,
            other => {
                return Err(LakeError::Other(format!(
                    "column {} of type {other} has no Delta type",
                    f.name()
                )));
            }
        };
        out.push(StructField::new(
            f.name(),
            DeltaType::Primitive(t),
            f.is_nullable(),
        ));
    }
    out.push(StructField::new(DATE_COLUMN, DeltaType::DATE, false));
    out.push(StructField::new(HOUR_COLUMN, DeltaType::INTEGER, false));
    Ok(out)
}

/// What one partition's files in Delta must become, worked out from a
/// listing of the partition and the Kinesis attempts seen up to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionMirror {
    pub partition: Option<Partition>,
    /// The compaction log entry mirrored: the partition's transaction version.
    pub version: i64,
    pub add: Vec<ObjectMeta>,
    /// Names Delta holds that the listing shows are no longer read.
    pub remove: Vec<String>,
    /// When the oldest file HEPop reads but Delta may not hold yet was written (µs).
    pub oldest_unpublished: Option<i64>,
}

impl PartitionMirror {
    /// `held`: the partition's files in Delta (name → modification time, µs).
    /// Publishes a visible file once it is final: not a bundle, and settled
    /// (`frontier` holds the attempts seen up to the listing, so any attempt
    /// that superseded a settled one is in it). Removes a held file the
    /// listing shows retired, replaced or superseded, or that is gone from a
    /// listing taken well after it was written.
    pub fn of(
        listing: &PartitionListing,
        frontier: &Frontier,
        listed_at_micros: i64,
        retries_end_micros: i64,
        held: &HashMap<String, i64>,
    ) -> Self {
        let publishable = |f: &ObjectMeta| is_publishable(f, frontier, retries_end_micros);
        let visible: HashSet<&str> = listing.visible().iter().map(file_name).collect();
        let present: HashSet<&str> = listing.files.iter().map(file_name).collect();
        let mut m = PartitionMirror {
            partition: Some(listing.partition),
            version: listing.snapshot.seq as i64,
            ..Default::default()
        };
        for f in listing.visible() {
            if !publishable(f) {
                let t = f.last_modified.timestamp_micros();
                m.oldest_unpublished = Some(m.oldest_unpublished.map_or(t, |o: i64| o.min(t)));
            } else if !held.contains_key(file_name(f)) {
                m.add.push(f.clone());
            }
        }
        for (name, &modified) in held {
            let absent = !present.contains(name.as_str());
            let gone = absent && modified < listed_at_micros - CLOCK_MARGIN_MICROS;
            if (!absent && !visible.contains(name.as_str())) || gone {
                m.remove.push(name.clone());
            }
        }
        m.add.sort_by(|a, b| a.location.cmp(&b.location));
        m.remove.sort();
        m
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// How many of the files HEPop's reader sees are final (what
    /// [`PartitionMirror::of`] would have Delta hold), with the attempts in `frontier`.
    pub fn publishable(
        listing: &PartitionListing,
        frontier: &Frontier,
        retries_end_micros: i64,
    ) -> usize {
        listing
            .visible()
            .iter()
            .filter(|f| is_publishable(f, frontier, retries_end_micros))
            .count()
    }
}

/// Final: not a bundle, and settled (no retry can supersede it).
fn is_publishable(f: &ObjectMeta, frontier: &Frontier, retries_end_micros: i64) -> bool {
    BundleHour::parse(&f.location).is_none()
        && FileName::parse(file_name(f)).is_some_and(|n| frontier.settled(&n, retries_end_micros))
}

/// One HEP type's Delta table.
pub struct PublicTable {
    hep_type: u8,
    store: Arc<dyn ObjectStore>,
    table: DeltaTable,
}

/// What a mirror commit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub version: Option<u64>,
    pub added: usize,
    pub removed: usize,
    /// Partitions left alone: the table had mirrored a newer log entry.
    pub stale: usize,
}

impl PublicTable {
    /// Loads the table, if it exists.
    pub async fn load(store: &Arc<dyn ObjectStore>, hep_type: u8) -> Result<Option<Self>> {
        Ok(load_table(store, Root::Table(hep_type))
            .await?
            .map(|table| Self {
                hep_type,
                store: store.clone(),
                table,
            }))
    }

    /// Loads the table, creating it if absent and adding the columns the
    /// lake's schema has gained since (older files read them as null).
    pub async fn open(store: &Arc<dyn ObjectStore>, hep_type: u8) -> Result<Self> {
        let mut t = match Self::load(store, hep_type).await? {
            Some(t) => t,
            None => Self::create(store, hep_type, columns(hep_type)?).await?,
        };
        t.evolve().await?;
        Ok(t)
    }

    /// Creates the table with `columns` (another compactor may create it
    /// first: then it is loaded).
    pub async fn create(
        store: &Arc<dyn ObjectStore>,
        hep_type: u8,
        columns: Vec<StructField>,
    ) -> Result<Self> {
        let table = create_table(
            store,
            Root::Table(hep_type),
            &table_name(hep_type),
            columns,
            TIME,
        )
        .await?;
        Ok(Self {
            hep_type,
            store: store.clone(),
            table,
        })
    }

    /// The table's column names, in order.
    pub fn column_names(&self) -> Result<Vec<String>> {
        Ok(self
            .state()?
            .schema()
            .fields()
            .map(|f| f.name().clone())
            .collect())
    }

    async fn evolve(&mut self) -> Result<()> {
        self.table = add_missing_columns(self.table.clone(), columns(self.hep_type)?).await?;
        Ok(())
    }

    fn state(&self) -> Result<&deltalake_core::table::state::DeltaTableState> {
        self.table.snapshot().map_err(delta_error)
    }

    /// Reads the newest version of the log.
    pub async fn reload(&mut self) -> Result<()> {
        self.table.update_state().await.map_err(delta_error)
    }

    /// The files the table holds, by partition: name → modification time (µs).
    pub fn held(&self) -> Result<HashMap<Partition, HashMap<String, i64>>> {
        let mut out: HashMap<Partition, HashMap<String, i64>> = HashMap::new();
        for f in self.state()?.log_data().iter() {
            if let Some((p, name)) = parse_relative_path(self.hep_type, &f.path()) {
                out.entry(p)
                    .or_default()
                    .insert(name, f.modification_time() * 1000);
            }
        }
        Ok(out)
    }

    /// Names compaction's clean-up must not delete yet, by partition: those
    /// the table holds and those it removed less than `grace` before `now`
    /// (a reader may have loaded the version before the removal).
    pub async fn pinned(
        &self,
        now_micros: i64,
        grace_micros: i64,
    ) -> Result<HashMap<Partition, HashSet<String>>> {
        let mut out: HashMap<Partition, HashSet<String>> = HashMap::new();
        for (p, files) in self.held()? {
            out.entry(p).or_default().extend(files.into_keys());
        }
        let since_ms = (now_micros - grace_micros) / 1000;
        let log_store = self.table.log_store();
        let tombstones: Vec<(String, Option<i64>)> = self
            .state()?
            .all_tombstones(log_store.as_ref())
            .map_ok(|t| (t.path().into_owned(), t.deletion_timestamp()))
            .try_collect()
            .await
            .map_err(delta_error)?;
        for (path, deleted_ms) in tombstones {
            if deleted_ms.is_none_or(|d| d > since_ms)
                && let Some((p, name)) = parse_relative_path(self.hep_type, &path)
            {
                out.entry(p).or_default().insert(name);
            }
        }
        Ok(out)
    }

    /// The log entry of partition `p` the table mirrored last.
    pub async fn mirrored_version(&self, p: Partition) -> Result<Option<i64>> {
        let log_store = self.table.log_store();
        self.state()?
            .transaction_version(log_store.as_ref(), app_id(p))
            .await
            .map_err(delta_error)
    }

    /// Commits `changes` in one Delta commit, less the partitions the table
    /// mirrored from a newer log entry. A conflict (see [`is_conflict`]) means
    /// another commit came first: reload and work the changes out again.
    pub async fn commit(
        &mut self,
        changes: &[PartitionMirror],
        now_micros: i64,
    ) -> Result<Committed> {
        let mut actions = Vec::new();
        let mut done = Committed::default();
        let now_ms = now_micros / 1000;
        for c in changes.iter().filter(|c| !c.is_empty()) {
            let Some(p) = c.partition else { continue };
            if self
                .mirrored_version(p)
                .await?
                .is_some_and(|v| v > c.version)
            {
                done.stale += 1;
                continue;
            }
            // A removal that merely replaces files (compaction) is no change of data.
            let replaced = !c.add.is_empty();
            // Footers read a few at a time: a busy run publishes hundreds of files.
            let reads: Vec<_> = c
                .add
                .iter()
                .map(|f| {
                    let (store, f) = (self.store.clone(), f.clone());
                    async move { stats(&store, &f).await }
                })
                .collect();
            let stats: Vec<String> = futures::stream::iter(reads)
                .buffered(16)
                .try_collect()
                .await?;
            for (f, stats) in c.add.iter().zip(stats) {
                actions.push(add(p, f, stats, !is_compacted(f)));
            }
            for name in &c.remove {
                actions.push(remove(p, name, now_ms, !replaced || c.version == EXPIRED));
            }
            actions.push(txn(p, c.version, now_ms));
            done.added += c.add.len();
            done.removed += c.remove.len();
        }
        if done.added + done.removed == 0 {
            return Ok(done);
        }
        done.version = Some(self.commit_actions(actions).await?);
        Ok(done)
    }

    /// Commits `actions` as they are (see [`add`], [`remove`], [`txn`]) and
    /// reads the table's new state; returns the version committed.
    pub async fn commit_actions(&mut self, actions: Vec<Action>) -> Result<u64> {
        commit_actions(&mut self.table, actions).await
    }

    /// Writes a checkpoint of the current version and removes log entries
    /// older than the log's retention that it makes unneeded; returns how many.
    /// A full sweep does this daily whatever the traffic, so the newest
    /// checkpoint is never older than a day (the bucket's lifecycle expires
    /// objects after the retention period, log objects included).
    pub async fn checkpoint(&self) -> Result<usize> {
        use deltalake_core::checkpoints::{cleanup_metadata, create_checkpoint};
        create_checkpoint(&self.table, None)
            .await
            .map_err(delta_error)?;
        cleanup_metadata(&self.table, None)
            .await
            .map_err(delta_error)
    }

    /// The removals of every file of hours before `first_kept` (an hour
    /// number), each partition's transaction set to [`EXPIRED`].
    pub fn expiring(&self, first_kept: i64) -> Result<Vec<PartitionMirror>> {
        Ok(self
            .held()?
            .into_iter()
            .filter(|(p, _)| p.hour < first_kept)
            .map(|(p, files)| {
                let mut remove: Vec<String> = files.into_keys().collect();
                remove.sort();
                PartitionMirror {
                    partition: Some(p),
                    version: EXPIRED,
                    remove,
                    ..Default::default()
                }
            })
            .collect())
    }
}

fn log_store(store: &Arc<dyn ObjectStore>, root: Root) -> LogStoreRef {
    let root = root.prefix();
    let prefixed: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(store.clone(), root.to_string()));
    // Only the path matters: delta-rs resolves it against `store` itself.
    let url = url::Url::parse(&format!("memory:///{root}/")).expect("a valid URL");
    default_logstore(prefixed, store.clone(), &url, &StorageConfig::default())
}

/// Loads the Delta table at `root`, if it exists.
pub(crate) async fn load_table(
    store: &Arc<dyn ObjectStore>,
    root: Root,
) -> Result<Option<DeltaTable>> {
    let mut table = DeltaTable::new(log_store(store, root));
    match table.load().await {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(delta_error(e)),
    }
}

/// `table` with the columns of `columns` it lacks added (as nullable, at the
/// end): files written before read them as null.
pub(crate) async fn add_missing_columns(
    table: DeltaTable,
    columns: Vec<StructField>,
) -> Result<DeltaTable> {
    let have: HashSet<String> = table
        .snapshot()
        .map_err(delta_error)?
        .schema()
        .fields()
        .map(|f| f.name().clone())
        .collect();
    let missing: Vec<StructField> = columns
        .into_iter()
        .filter(|f| !have.contains(f.name()))
        .map(|f| StructField::new(f.name(), f.data_type().clone(), true))
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    table
        .add_columns()
        .with_fields(missing)
        .await
        .map_err(delta_error)
}

/// Creates the Delta table at `root`, partitioned by `date` and `hour`, with
/// the lake's table properties and statistics on `stats_column` only (another compactor may create it first: then
/// it is loaded).
pub(crate) async fn create_table(
    store: &Arc<dyn ObjectStore>,
    root: Root,
    name: &str,
    columns: Vec<StructField>,
    stats_column: &str,
) -> Result<DeltaTable> {
    let properties = TABLE_PROPERTIES
        .into_iter()
        .chain([(STATS_COLUMNS, stats_column)])
        .map(|(k, v)| (k, Some(v)));
    let created = DeltaTable::new(log_store(store, root))
        .create()
        .with_table_name(name)
        .with_columns(columns)
        .with_partition_columns([DATE_COLUMN, HOUR_COLUMN])
        .with_configuration(properties)
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(table) => Ok(table),
        Err(e) => load_table(store, root).await?.ok_or_else(|| delta_error(e)),
    }
}

/// Commits `actions` as they are to `table` and keeps the commit's state in
/// it; returns the version committed.
pub(crate) async fn commit_actions(table: &mut DeltaTable, actions: Vec<Action>) -> Result<u64> {
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec![DATE_COLUMN.into(), HOUR_COLUMN.into()]),
        predicate: None,
    };
    // A checkpoint every `delta.checkpointInterval` commits, and expired
    // log entries removed after it, as the table's properties say.
    let properties = CommitProperties::default()
        .with_max_retries(3)
        .with_create_checkpoint(true)
        .with_cleanup_expired_logs(None);
    let state = table.snapshot().map_err(delta_error)?;
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(state), table.log_store(), operation)
        .await
        .map_err(delta_error)?;
    // The commit's own state, rather than reading the log again (two LISTs less).
    table.state = Some(finalized.snapshot());
    Ok(finalized.version())
}

/// The add action of a data file of partition `p`, with its statistics ([`stats`]).
pub fn add(p: Partition, f: &ObjectMeta, stats: String, data_change: bool) -> Action {
    add_to_hour(p.hour, f, stats, data_change)
}

/// The add action of data file `f` of hour `hour` of any table of the lake.
pub fn add_to_hour(hour: i64, f: &ObjectMeta, stats: String, data_change: bool) -> Action {
    Action::Add(Add {
        path: hour_path(hour, file_name(f)),
        partition_values: partition_values(hour),
        size: f.size as i64,
        modification_time: f.last_modified.timestamp_millis(),
        data_change,
        stats: Some(stats),
        ..Default::default()
    })
}

/// The remove action of file `name` of partition `p`, removed at `now_ms`.
pub fn remove(p: Partition, name: &str, now_ms: i64, data_change: bool) -> Action {
    remove_from_hour(p.hour, name, now_ms, data_change)
}

/// The remove action of file `name` of hour `hour` of any table, removed at `now_ms`.
pub fn remove_from_hour(hour: i64, name: &str, now_ms: i64, data_change: bool) -> Action {
    Action::Remove(Remove {
        path: hour_path(hour, name),
        data_change,
        deletion_timestamp: Some(now_ms),
        extended_file_metadata: Some(false),
        partition_values: Some(partition_values(hour)),
        ..Default::default()
    })
}

/// The transaction action saying partition `p` mirrors its log entry `version`.
pub fn txn(p: Partition, version: i64, now_ms: i64) -> Action {
    Action::Txn(Transaction::new_with_last_update(
        app_id(p),
        version,
        Some(now_ms),
    ))
}

fn is_compacted(f: &ObjectMeta) -> bool {
    matches!(
        FileName::parse(file_name(f)),
        Some(FileName::Compacted { .. })
    )
}

/// Delta statistics of a data file from its footer: row count, and the
/// range of `time` at millisecond precision (the minimum rounded down, the
/// maximum up, so no reader skips a file holding a row it asks for).
pub async fn stats(store: &Arc<dyn ObjectStore>, f: &ObjectMeta) -> Result<String> {
    let mut reader = StoreReader::new(store.clone(), f.location.clone(), f.size);
    let md = reader.get_metadata(None).await?;
    let rows = md.file_metadata().num_rows();
    let time = md
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == TIME);
    let mut range: Option<(i64, i64)> = None;
    let mut complete = time.is_some();
    for rg in md.row_groups() {
        match time.and_then(|i| rg.column(i).statistics()) {
            Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(&lo), Some(&hi)) => {
                    range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                }
                _ => complete = rg.num_rows() == 0 && complete,
            },
            _ => complete = false,
        }
    }
    Ok(time_stats(rows, range.filter(|_| complete)))
}

/// Delta statistics of `rows` rows whose `time` spans `range` (µs, inclusive).
pub fn time_stats(rows: i64, range: Option<(i64, i64)>) -> String {
    time_stats_of(TIME, rows, range)
}

/// Delta statistics of `rows` rows whose timestamp column `column` spans
/// `range` (µs, inclusive).
pub fn time_stats_of(column: &str, rows: i64, range: Option<(i64, i64)>) -> String {
    let mut s = serde_json::json!({ "numRecords": rows });
    let ms = |us: i64, up: bool| {
        let m = us.div_euclid(1000) + (up && us.rem_euclid(1000) > 0) as i64;
        chrono::DateTime::from_timestamp_millis(m)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    };
    if let Some((Some(lo), Some(hi))) = range.map(|(lo, hi)| (ms(lo, false), ms(hi, true))) {
        s["minValues"] = serde_json::json!({ column: lo });
        s["maxValues"] = serde_json::json!({ column: hi });
        s["nullCount"] = serde_json::json!({ column: 0 });
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_round_trip() {
        let p = Partition {
            hep_type: 5,
            hour: 490_000,
        };
        let path = relative_path(p, "c-abc-0.parquet");
        assert!(
            path.starts_with("date=") && path.contains("/hour="),
            "{path}"
        );
        assert_eq!(
            parse_relative_path(5, &path),
            Some((p, "c-abc-0.parquet".to_owned()))
        );
        assert_eq!(parse_relative_path(5, "_delta_log/00.json"), None);
        let v = partition_values(p.hour);
        assert_eq!(
            v[HOUR_COLUMN].as_deref(),
            Some((490_000 % 24).to_string().as_str())
        );
    }

    #[test]
    fn time_statistics_round_outwards_to_milliseconds() {
        let s: serde_json::Value = serde_json::from_str(&time_stats(
            3,
            Some((1_000_000_000_123_456, 1_000_000_000_999_001)),
        ))
        .unwrap();
        assert_eq!(s["numRecords"], 3);
        assert_eq!(s["minValues"][TIME], "2001-09-09T01:46:40.123Z");
        assert_eq!(s["maxValues"][TIME], "2001-09-09T01:46:41.000Z");
        let exact: serde_json::Value = serde_json::from_str(&time_stats(
            1,
            Some((1_000_000_000_123_000, 1_000_000_000_123_000)),
        ))
        .unwrap();
        assert_eq!(exact["maxValues"][TIME], "2001-09-09T01:46:40.123Z");
        let none: serde_json::Value = serde_json::from_str(&time_stats(0, None)).unwrap();
        assert!(none.get("minValues").is_none());
    }

    #[test]
    fn every_column_has_a_delta_type() {
        for t in [1, 5, 100] {
            let c = columns(t).unwrap();
            assert_eq!(c.len(), schema_for(t).fields().len() + 2);
        }
    }
}
