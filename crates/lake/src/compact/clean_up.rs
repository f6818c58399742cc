//! Step 4 and retention: deleting what no reader needs any more, and moving
//! unreadable files aside.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{CompactionConfig, micros};

use crate::Result;
use crate::catalog::{PartitionListing, file_name, hours};
use crate::paths::{FileName, Partition, Root, job_started_micros};

pub(super) async fn delete_if_present(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<bool> {
    match store.delete(path).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Step 4: deletes inputs whose grace period is over (and late rewrites of
/// them), outputs no entry names that no running job can still commit, and
/// log entries older than the newest once it has been in force for a grace period.
pub async fn clean_up(
    store: &Arc<dyn ObjectStore>,
    l: &PartitionListing,
    cfg: &CompactionConfig,
    now: i64,
    keep: Option<&HashSet<String>>,
) -> Result<usize> {
    let grace = micros(cfg.grace);
    let s = &l.snapshot;
    let due = s.retired_by(now - grace);
    let retired = s.retired_set();
    let mut deleted = 0;
    // Bundles are other tables' too: a run deletes them (`retired_bundles`).
    for f in l
        .files
        .iter()
        .filter(|f| Partition::parse(&f.location).is_some())
    {
        let name = file_name(f);
        // An output no entry names whose job is older than any job may run:
        // that job gave up or crashed (ids of the first protocol carry no
        // start time: the store's clock stands in).
        let abandoned = FileName::parse(name)
            .and_then(|n| {
                n.job_id()
                    .map(|id| job_started_micros(id).unwrap_or(f.last_modified.timestamp_micros()))
            })
            .is_some_and(|started| now - started > micros(cfg.orphan_after))
            && !s.live.contains(name)
            && !retired.contains(name);
        let due = due.contains(name) && keep.is_some_and(|k| !k.contains(name));
        if due || abandoned {
            deleted += delete_if_present(store, &f.location).await? as usize;
        }
    }
    if let Some((newest, _)) = l.log.last()
        && s.committed_micros + grace <= now
    {
        let old = l
            .log
            .iter()
            .filter(|(seq, _)| seq < newest)
            .map(|(_, m)| m)
            .chain(&l.legacy);
        for m in old {
            deleted += delete_if_present(store, &m.location).await? as usize;
        }
    }
    Ok(deleted)
}

/// Deletes every hour of `roots` (tables and bundles) up to `last_expired`
/// (hours since the epoch): data files first, the log last. Returns (hours,
/// objects) deleted.
pub(super) async fn expire(
    store: &Arc<dyn ObjectStore>,
    roots: impl Iterator<Item = Root>,
    last_expired: i64,
) -> Result<(usize, usize)> {
    let (mut expired, mut objects) = (0, 0);
    for root in roots {
        for hour in hours(store, root, None, Some(last_expired)).await? {
            let mut all: Vec<Path> = store
                .list(Some(&root.hour_prefix(hour)))
                .map_ok(|m| m.location)
                .try_collect()
                .await?;
            // Markers last: a crash half-way leaves an hour that is still consistent.
            all.sort_by_key(|path| path.as_ref().contains(crate::paths::COMPACTIONS_DIR));
            let n = all.len();
            let locations = futures::stream::iter(all.into_iter().map(Ok)).boxed();
            store
                .delete_stream(locations)
                .try_collect::<Vec<_>>()
                .await?;
            objects += n;
            expired += 1;
        }
    }
    Ok((expired, objects))
}
