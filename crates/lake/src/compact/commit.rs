//! Steps 3 of the protocol: a job's outputs committed by appending the
//! partition's next log entry (create-if-absent), or discarded.

use std::sync::Arc;

use object_store::{ObjectMeta, ObjectStore, PutMode};

use super::clean_up::delete_if_present;
use super::merge_job::{Merged, write_outputs};
use super::{Clock, CompactionConfig, Job, micros};

use crate::Result;
use crate::catalog::{Snapshot, file_name, list_partition_in};
use crate::paths::{MarkerName, Partition};

/// What one committed job did.
#[derive(Debug, Clone, Default)]
pub struct JobDone {
    pub inputs: usize,
    pub outputs: usize,
    pub rows: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub snapshot: Snapshot,
    /// The outputs as stored (their time is the commit's, near enough for a listing).
    pub written: Vec<ObjectMeta>,
}

/// Merges and commits one job; None when another compactor overtook it.
pub(super) async fn run_job(
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    cfg: &CompactionConfig,
    clock: Clock,
    base: Option<&Snapshot>,
) -> Result<Option<JobDone>> {
    let merged = write_outputs(store, job, cfg, clock.now()).await?;
    finish(store, &merged, cfg, clock.now(), base).await
}

/// Commits what [`write_outputs`] wrote, or discards it when overtaken or
/// too old. `base`: the entry the job was planned from, if known (saves a LIST).
pub async fn finish(
    store: &Arc<dyn ObjectStore>,
    merged: &Merged,
    cfg: &CompactionConfig,
    now_micros: i64,
    base: Option<&Snapshot>,
) -> Result<Option<JobDone>> {
    let inputs: Vec<String> = merged
        .inputs
        .iter()
        .map(|f| file_name(f).to_owned())
        .collect();
    let outputs: Vec<String> = merged.outputs.iter().map(|(n, _)| n.to_string()).collect();
    let committed = if now_micros - merged.started_micros >= micros(cfg.job_timeout) {
        // Another run may already take its outputs for abandoned ones.
        tracing::warn!(partition = %merged.partition, "compaction job ran out of time; not committing");
        None
    } else {
        match commit(store, merged.partition, &inputs, &outputs, now_micros, base).await? {
            Commit::Appended(snapshot) => Some(snapshot),
            Commit::Overtaken => None,
            Commit::Contended => {
                tracing::warn!(
                    partition = %merged.partition,
                    "other compactors kept appending to the log first; not committing"
                );
                None
            }
        }
    };
    match committed {
        Some(snapshot) => Ok(Some(JobDone {
            inputs: inputs.len(),
            outputs: outputs.len(),
            rows: merged.rows,
            bytes_in: merged.inputs.iter().map(|f| f.size).sum(),
            bytes_out: merged.outputs.iter().map(|(_, b)| b).sum(),
            snapshot,
            written: merged
                .outputs
                .iter()
                .map(|(name, size)| ObjectMeta {
                    location: merged.partition.file(name),
                    last_modified: chrono::DateTime::from_timestamp_micros(now_micros)
                        .unwrap_or_default(),
                    size: *size,
                    e_tag: None,
                    version: None,
                })
                .collect(),
        })),
        None => {
            // Certainly not committed: no entry names these outputs.
            for (name, _) in &merged.outputs {
                delete_if_present(store, &merged.partition.file(name)).await?;
            }
            Ok(None)
        }
    }
}

/// How a commit ended.
#[derive(Debug)]
enum Commit {
    /// The entry was appended: it is the partition's newest state.
    Appended(Snapshot),
    /// Another compactor took an input first: the job's outputs are not needed.
    Overtaken,
    /// Other compactors appended first at every try: nothing committed, the
    /// job may run again.
    Contended,
}

/// Appends the log entry that replaces `inputs` by `outputs`, if every
/// input is still visible.
/// First tries to extend `base` directly: if that entry's successor does not
/// exist yet, `base` is the newest (a stale `base` whose successor was
/// cleaned up yields an entry below the newest, which readers ignore: the
/// outputs stay invisible and are deleted as abandoned, nothing is lost).
async fn commit(
    store: &Arc<dyn ObjectStore>,
    p: Partition,
    inputs: &[String],
    outputs: &[String],
    now_micros: i64,
    base: Option<&Snapshot>,
) -> Result<Commit> {
    let mut base = base;
    for _ in 0..8 {
        let listed;
        let snapshot = match base.take() {
            Some(s) => s,
            None => {
                // The snapshot alone: the partition's bundles do not matter here.
                listed = list_partition_in(store, p, &[]).await?.snapshot;
                &listed
            }
        };
        let retired = snapshot.retired_set();
        if !inputs.iter().all(|i| snapshot.admits(&retired, i)) {
            return Ok(Commit::Overtaken);
        }
        let next = snapshot.next(inputs, outputs, now_micros);
        let json = serde_json::to_vec(&next).expect("snapshot serialises");
        match store
            .put_opts(
                &p.marker(&MarkerName::Log(next.seq)),
                json.into(),
                PutMode::Create.into(),
            )
            .await
        {
            Ok(_) => return Ok(Commit::Appended(next)),
            // Another compactor appended entry `seq` first: validate against it.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Commit::Contended)
}
