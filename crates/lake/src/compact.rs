//! Merges a closed hour's small files into few large ones.
//!
//! Protocol, per partition (each step is one atomic object PUT or DELETE):
//! 1. write outputs `c-<id>-<n>.parquet`: invisible, no marker names them yet;
//! 2. write `_compactions/<id>.json` (the commit): from now on readers see the
//!    outputs and not the files they replace;
//! 3. after a grace period longer than any query, delete the replaced files;
//! 4. later runs delete markers nothing depends on and outputs of compactions
//!    that never committed.
//! A crash between any two steps leaves every row visible exactly once, and
//! re-running finishes the job: compaction is idempotent.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::Result;
use crate::catalog::{CompactionMarker, PartitionListing, list_partition, partitions, tables};
use crate::parquet_io::{self, EncodeOptions};
use crate::paths::{MICROS_PER_HOUR, Partition, compaction_id_of};

#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// Aim for output files of about this size.
    pub target_file_bytes: u64,
    /// Replaced files stay this long after the commit, for queries that
    /// listed them before it. Must exceed the query timeout.
    pub grace: Duration,
    /// An hour is closed this long after it ends (late packets still arrive).
    pub close_after: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self { target_file_bytes: 128 << 20, grace: Duration::from_secs(300), close_after: Duration::from_secs(600) }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    pub partitions: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub rows: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub deleted: usize,
}

impl CompactionReport {
    fn add(&mut self, o: &Self) {
        self.partitions += o.partitions;
        self.files_in += o.files_in;
        self.files_out += o.files_out;
        self.rows += o.rows;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.deleted += o.deleted;
    }
}

/// Compacts every closed hour of every table.
pub async fn compact_closed(store: &Arc<dyn ObjectStore>, cfg: &CompactionConfig, now_micros: i64) -> Result<CompactionReport> {
    let close = cfg.close_after.as_micros() as i64;
    // Hour h is closed when (h + 1) hours + close_after <= now.
    let last_closed = (now_micros - close).div_euclid(MICROS_PER_HOUR) - 1;
    let mut report = CompactionReport::default();
    for t in tables(store).await? {
        for p in partitions(store, t, None, Some(last_closed)).await? {
            report.add(&compact_partition(store, p, cfg, now_micros).await?);
        }
    }
    Ok(report)
}

async fn delete_if_present(store: &Arc<dyn ObjectStore>, path: &object_store::path::Path) -> Result<bool> {
    match store.delete(path).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Step 3 and 4: removes what committed compactions made obsolete.
/// Returns how many objects it deleted, and whether replaced files remain.
async fn clean_up(store: &Arc<dyn ObjectStore>, l: &PartitionListing, cfg: &CompactionConfig, now: i64) -> Result<(usize, bool)> {
    let grace = cfg.grace.as_micros() as i64;
    let mut present: HashSet<&str> = l.files.iter().filter_map(|f| f.location.filename()).collect();
    let committed = l.committed();
    let mut deleted = 0;
    let mut waiting = false;
    for m in &committed {
        let pending: Vec<&String> = m.replaces.iter().filter(|r| present.contains(r.as_str())).collect();
        if pending.is_empty() {
            continue;
        }
        if now - m.committed_micros < grace {
            waiting = true;
            continue;
        }
        for r in pending {
            deleted += delete_if_present(store, &l.partition.file(r)).await? as usize;
            present.remove(r.as_str());
        }
    }
    // A marker is obsolete once none of its outputs exist (a later compaction
    // replaced and deleted them, inheriting its replaced names) and none of
    // its replaced files are left.
    let carried: HashSet<&str> = committed.iter().flat_map(|m| m.replaces.iter().map(String::as_str)).collect();
    for (meta, m) in &l.markers {
        let referenced = m.outputs.iter().chain(&m.replaces).any(|f| present.contains(f.as_str()));
        let covered = m.replaces.iter().all(|r| carried.contains(r.as_str()));
        if !referenced && covered {
            deleted += delete_if_present(store, &meta.location).await? as usize;
        }
    }
    // Outputs of a compaction that crashed before its commit.
    let marker_ids: HashSet<&str> = l.markers.iter().map(|(_, m)| m.id.as_str()).collect();
    for f in &l.files {
        let name = f.location.filename().unwrap_or_default();
        let orphan = compaction_id_of(name).is_some_and(|id| !marker_ids.contains(id));
        // Only old ones: a young orphan may belong to a compaction still running.
        if orphan && now - f.last_modified.timestamp_micros() > MICROS_PER_HOUR.max(grace) {
            deleted += delete_if_present(store, &f.location).await? as usize;
        }
    }
    Ok((deleted, waiting))
}

/// Compacts one hour partition. Safe to run again at any time.
pub async fn compact_partition(store: &Arc<dyn ObjectStore>, partition: Partition, cfg: &CompactionConfig, now: i64) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    let listing = list_partition(store, partition).await?;
    let (deleted, waiting) = clean_up(store, &listing, cfg, now).await?;
    report.deleted = deleted;
    if waiting {
        // An earlier compaction's replaced files are still in their grace
        // period; merging now would stack a second replacement on them.
        return Ok(report);
    }
    let small: Vec<_> = listing.visible().into_iter().filter(|f| f.size < cfg.target_file_bytes / 2).collect();
    if small.len() < 2 {
        return Ok(report);
    }
    let mut batches: Vec<RecordBatch> = Vec::new();
    for f in &small {
        batches.extend(parquet_io::read_all(store, &f.location).await?);
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let bytes_in: u64 = small.iter().map(|f| f.size).sum();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let hep_type = partition.hep_type;
    let target = cfg.target_file_bytes;
    let outputs = tokio::task::spawn_blocking(move || encode_outputs(batches, hep_type, rows, bytes_in, target))
        .await
        .map_err(|e| crate::LakeError::Other(format!("compaction encoder: {e}")))??;

    let mut names = Vec::with_capacity(outputs.len());
    for (n, bytes) in outputs.into_iter().enumerate() {
        let name = format!("c-{id}-{n}.parquet");
        report.bytes_out += bytes.len() as u64;
        parquet_io::put(store, &partition.file(&name), bytes).await?;
        names.push(name);
    }
    let mut replaces: Vec<String> = small.iter().filter_map(|f| f.location.filename().map(str::to_owned)).collect();
    // Carry forward what earlier compactions replaced when their outputs are
    // replaced now: their markers become obsolete, and a replaced name must
    // stay replaced forever (a late Kinesis retry may write it again).
    let merged: HashSet<&str> = replaces.iter().map(String::as_str).collect();
    let inherited: Vec<String> = listing
        .committed()
        .iter()
        .filter(|m| m.outputs.iter().any(|o| merged.contains(o.as_str())))
        .flat_map(|m| m.replaces.iter().cloned())
        .collect();
    replaces.extend(inherited);
    replaces.sort();
    replaces.dedup();
    let marker = CompactionMarker { id: id.clone(), committed_micros: chrono::Utc::now().timestamp_micros().max(now), outputs: names, replaces };
    let json = serde_json::to_vec_pretty(&marker).expect("marker serialises");
    store.put(&partition.compaction_marker(&id), json.into()).await?;

    report.partitions = 1;
    report.files_in = small.len();
    report.files_out = marker.outputs.len();
    report.rows = rows;
    report.bytes_in = bytes_in;
    if cfg.grace.is_zero() {
        let after = list_partition(store, partition).await?;
        report.deleted += clean_up(store, &after, cfg, now.max(marker.committed_micros)).await?.0;
    }
    Ok(report)
}

/// Sorts all rows and cuts them into files of about `target` bytes.
fn encode_outputs(batches: Vec<RecordBatch>, hep_type: u8, rows: usize, bytes_in: u64, target: u64) -> Result<Vec<bytes::Bytes>> {
    let schema = crate::schema::schema_for(hep_type);
    let all = arrow::compute::concat_batches(&schema, &batches)?;
    drop(batches);
    let sorted = parquet_io::sort_for_storage(&all, hep_type)?;
    drop(all);
    // Compaction shrinks files (better compression, one footer): using the
    // input's bytes per row over-estimates, which errs towards fewer files.
    let per_row = (bytes_in / rows.max(1) as u64).max(1);
    let rows_per_file = ((target / per_row) as usize).max(1);
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < sorted.num_rows() {
        let len = rows_per_file.min(sorted.num_rows() - offset);
        out.push(parquet_io::encode_sorted(&sorted.slice(offset, len), hep_type, EncodeOptions::COMPACT)?);
        offset += len;
    }
    Ok(out)
}
