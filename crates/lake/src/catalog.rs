//! What is in the lake: tables, hour partitions, and which files of a
//! partition a reader must see, given the compactions committed in it.
//!
//! Visibility rule (see ARCHITECTURE.md, "Compaction"): a compaction is
//! *committed* when its marker exists and every output it names exists. A
//! data file is visible when no committed compaction replaces it and, if it
//! is itself a compaction output, its own compaction is committed.
use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::paths::{self, COMPACTIONS_DIR, Partition, compaction_id_of, is_data_file};
use crate::schema::parse_table_name;
use crate::{LakeError, Result};

/// The commit record of one compaction, written after all its outputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompactionMarker {
    pub id: String,
    /// When the compaction committed (µs since epoch): replaced files stay
    /// readable for a grace period after it, for queries already planned.
    pub committed_micros: i64,
    /// File names (in the same partition) this compaction wrote.
    pub outputs: Vec<String>,
    /// File names it replaces.
    pub replaces: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PartitionListing {
    pub partition: Partition,
    /// Every data file present, visible or not.
    pub files: Vec<ObjectMeta>,
    pub markers: Vec<(ObjectMeta, CompactionMarker)>,
}

fn file_name(meta: &ObjectMeta) -> &str {
    meta.location.filename().unwrap_or_default()
}

impl PartitionListing {
    fn present(&self) -> HashSet<&str> {
        self.files.iter().map(file_name).collect()
    }

    /// Markers whose outputs all exist: their replacement is in force.
    pub fn committed(&self) -> Vec<&CompactionMarker> {
        let present = self.present();
        self.markers
            .iter()
            .map(|(_, m)| m)
            .filter(|m| m.outputs.iter().all(|o| present.contains(o.as_str())))
            .collect()
    }

    /// The files a reader must read: each stored row exactly once.
    pub fn visible(&self) -> Vec<ObjectMeta> {
        let committed = self.committed();
        let replaced: HashSet<&str> = committed.iter().flat_map(|m| m.replaces.iter().map(String::as_str)).collect();
        let committed_ids: HashSet<&str> = committed.iter().map(|m| m.id.as_str()).collect();
        self.files
            .iter()
            .filter(|f| {
                let name = file_name(f);
                !replaced.contains(name) && compaction_id_of(name).is_none_or(|id| committed_ids.contains(id))
            })
            .cloned()
            .collect()
    }
}

/// Lists one partition: data files and compaction markers (one LIST, one GET per marker).
pub async fn list_partition(store: &Arc<dyn ObjectStore>, partition: Partition) -> Result<PartitionListing> {
    let prefix = partition.prefix();
    let all: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
    let mut files = Vec::new();
    let mut marker_metas = Vec::new();
    for meta in all {
        let rel: Vec<_> = meta.location.prefix_match(&prefix).map(|p| p.collect()).unwrap_or_default();
        match rel.as_slice() {
            [name] if is_data_file(name.as_ref()) => files.push(meta),
            [dir, name] if dir.as_ref() == COMPACTIONS_DIR && name.as_ref().ends_with(".json") => marker_metas.push(meta),
            _ => {}
        }
    }
    let mut markers = Vec::with_capacity(marker_metas.len());
    for meta in marker_metas {
        let bytes = match store.get(&meta.location).await {
            Ok(r) => r.bytes().await?,
            // Deleted between LIST and GET: an obsolete marker being cleaned up.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let marker: CompactionMarker = serde_json::from_slice(&bytes)
            .map_err(|source| LakeError::Marker { path: meta.location.to_string(), source })?;
        markers.push((meta, marker));
    }
    Ok(PartitionListing { partition, files, markers })
}

/// Names of the child directories directly under `prefix`.
async fn child_dirs(store: &Arc<dyn ObjectStore>, prefix: Option<&Path>) -> Result<Vec<String>> {
    let listing = store.list_with_delimiter(prefix).await?;
    Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect())
}

/// HEP types that have a table (a `hep_<type>/` prefix) in the lake.
pub async fn tables(store: &Arc<dyn ObjectStore>) -> Result<Vec<u8>> {
    let mut t: Vec<u8> = child_dirs(store, None).await?.iter().filter_map(|d| parse_table_name(d)).collect();
    t.sort_unstable();
    Ok(t)
}

/// Hour partitions of one table within `[lo_hour, hi_hour]` (inclusive,
/// unbounded when None). Lists only the date directories in range.
pub async fn partitions(store: &Arc<dyn ObjectStore>, hep_type: u8, lo_hour: Option<i64>, hi_hour: Option<i64>) -> Result<Vec<Partition>> {
    let in_range = |h: i64| lo_hour.is_none_or(|lo| h >= lo) && hi_hour.is_none_or(|hi| h <= hi);
    let table = paths::table_prefix(hep_type);
    let mut out = Vec::new();
    for date in child_dirs(store, Some(&table)).await? {
        let Some(day) = paths::parse_date_dir(&date) else { continue };
        let (first, last) = (day * 24, day * 24 + 23);
        if lo_hour.is_some_and(|lo| last < lo) || hi_hour.is_some_and(|hi| first > hi) {
            continue;
        }
        // One LIST per date in range discovers its hours.
        for hour in child_dirs(store, Some(&table.clone().join(date.as_str()))).await? {
            let Some(h) = paths::parse_hour_dir(&hour) else { continue };
            let abs = first + h;
            if in_range(abs) {
                out.push(Partition { hep_type, hour: abs });
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}
