//! What is in the lake: tables, hour partitions, and which files of a
//! partition a reader must see.
//!
//! Each partition has a compaction log, `_compactions/<seq>.json`. Entry `n`
//! is a whole [`Snapshot`] (compaction outputs holding rows, and every name
//! whose rows were merged into one), so a reader GETs only the newest entry.
//! A writer never touches the log; a compaction appends entry `n + 1` with a
//! create-if-absent PUT, so two compactors can never both extend entry `n`.
//!
//! Visibility rule: a data file is visible when its name is not retired,
//! if it is a compaction output, it is live in the newest snapshot, and if
//! it holds an ingest attempt's rows, no later attempt superseded it
//! ([`crate::spans`]).
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::paths::{
    self, BUNDLES_DIR, BundleHour, COMPACTIONS_DIR, FileName, MarkerName, Partition, Root, TypeSet,
};
use crate::schema::parse_table_name;
use crate::spans::{self, Frontier};
use crate::{LakeError, Result};

/// Names retired by one commit, and when: they may be deleted a grace period later.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retired {
    pub at_micros: i64,
    pub names: Vec<String>,
}

/// The compaction log's format: every entry written says it; a reader that
/// meets a newer one refuses the partition rather than guess what it sees
/// ([`LakeError::NewerLogFormat`]). Entries written before the field
/// existed are format 1, today's.
pub const LOG_FORMAT: u32 = 1;

fn first_log_format() -> u32 {
    1
}

/// The state of a partition after log entry `seq`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    #[serde(default = "first_log_format")]
    pub format: u32,
    pub seq: u64,
    pub committed_micros: i64,
    /// Compaction outputs whose rows are in force.
    pub live: BTreeSet<String>,
    /// Every name whose rows now live in a compaction output. A retired name
    /// stays retired for good: a late Kinesis retry may write it again.
    pub retired: Vec<Retired>,
}

impl Snapshot {
    pub fn retired_set(&self) -> HashSet<&str> {
        self.retired
            .iter()
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect()
    }

    /// Names retired at or before `at_micros`: those a reader listing later
    /// than a grace period after it can no longer be reading.
    pub fn retired_by(&self, at_micros: i64) -> HashSet<&str> {
        self.retired
            .iter()
            .filter(|r| r.at_micros <= at_micros)
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect()
    }

    /// Whether a file of this name holds rows a reader must see (if present).
    pub fn admits(&self, retired: &HashSet<&str>, name: &str) -> bool {
        if retired.contains(name) {
            return false;
        }
        match FileName::parse(name) {
            Some(FileName::Compacted { .. }) => self.live.contains(name),
            Some(_) => true,
            None => false,
        }
    }

    /// The entry that merges `inputs` (all visible here) into `outputs`.
    pub fn next(&self, inputs: &[String], outputs: &[String], now_micros: i64) -> Snapshot {
        let mut live = self.live.clone();
        for i in inputs {
            live.remove(i);
        }
        live.extend(outputs.iter().cloned());
        let mut retired = self.retired.clone();
        let mut names = inputs.to_vec();
        names.sort();
        retired.push(Retired {
            at_micros: now_micros,
            names,
        });
        Snapshot {
            format: LOG_FORMAT,
            seq: self.seq + 1,
            committed_micros: now_micros.max(self.committed_micros),
            live,
            retired,
        }
    }

    /// The state the first protocol's commit markers describe. A marker
    /// counts when it exists (its outputs were written before it).
    pub fn from_legacy(markers: &[LegacyMarker]) -> Snapshot {
        let replaced: HashSet<&str> = markers
            .iter()
            .flat_map(|m| m.replaces.iter().map(String::as_str))
            .collect();
        let live = markers
            .iter()
            .flat_map(|m| m.outputs.iter())
            .filter(|o| !replaced.contains(o.as_str()))
            .cloned()
            .collect();
        let retired = markers
            .iter()
            .map(|m| Retired {
                at_micros: m.committed_micros,
                names: m.replaces.clone(),
            })
            .collect();
        Snapshot {
            format: LOG_FORMAT,
            seq: 0,
            committed_micros: markers
                .iter()
                .map(|m| m.committed_micros)
                .max()
                .unwrap_or(0),
            live,
            retired,
        }
    }
}

/// A commit marker of the first protocol (read, never written).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LegacyMarker {
    pub id: String,
    pub committed_micros: i64,
    pub outputs: Vec<String>,
    pub replaces: Vec<String>,
}

/// One partition as listed: built once by [`list_partition`] and not changed
/// after, so what a reader sees of it is worked out once and kept with it.
#[derive(Debug, Clone)]
pub struct PartitionListing {
    pub partition: Partition,
    /// Every data file present, visible or not: the partition's own, and the
    /// bundles of its hour that hold rows of its table (`paths::BundleHour`),
    /// whose names follow the same rules.
    pub files: Vec<ObjectMeta>,
    /// Compaction log entries present, oldest first.
    pub log: Vec<(u64, ObjectMeta)>,
    /// Markers of the first protocol.
    pub legacy: Vec<ObjectMeta>,
    /// The newest state (seq 0 when nothing was ever compacted).
    pub snapshot: Snapshot,
    /// [`Self::visible`], worked out on first use: a cached listing serves
    /// many queries, and the Kinesis names it holds are parsed once.
    visible: OnceLock<Vec<ObjectMeta>>,
}

pub fn file_name(meta: &ObjectMeta) -> &str {
    meta.location.filename().unwrap_or_default()
}

impl PartitionListing {
    pub fn new(
        partition: Partition,
        files: Vec<ObjectMeta>,
        log: Vec<(u64, ObjectMeta)>,
        legacy: Vec<ObjectMeta>,
        snapshot: Snapshot,
    ) -> Self {
        Self {
            partition,
            files,
            log,
            legacy,
            snapshot,
            visible: OnceLock::new(),
        }
    }

    /// The files a reader must read: each stored row exactly once. Newest
    /// first, the order a scan reads them in (see `HepTable::scan`).
    pub fn visible(&self) -> &[ObjectMeta] {
        self.visible.get_or_init(|| self.work_out_visible())
    }

    fn work_out_visible(&self) -> Vec<ObjectMeta> {
        let retired = self.snapshot.retired_set();
        let admitted: Vec<&ObjectMeta> = self
            .files
            .iter()
            .filter(|f| self.snapshot.admits(&retired, file_name(f)))
            .collect();
        // Only Kinesis ingest files can be superseded (names starting with `k`).
        let kinesis = |n: &&str| n.starts_with('k');
        let candidates = admitted.iter().map(|f| file_name(f)).filter(kinesis);
        let known = self
            .files
            .iter()
            .map(file_name)
            .chain(retired.iter().copied());
        let hidden = spans::superseded(candidates, known.filter(kinesis));
        let mut visible: Vec<ObjectMeta> = admitted
            .into_iter()
            .filter(|f| !hidden.contains(file_name(f)))
            .cloned()
            .collect();
        visible.sort_by_key(|m| std::cmp::Reverse(m.last_modified));
        visible
    }

    /// Takes note, in `frontier`, of every Kinesis attempt this partition shows.
    pub fn observe(&self, frontier: &mut Frontier) {
        let retired = self.snapshot.retired.iter().flat_map(|r| &r.names);
        for name in self
            .files
            .iter()
            .map(file_name)
            .chain(retired.map(String::as_str))
        {
            frontier.observe(name);
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Option<T>> {
    let bytes = match store.get(path).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| LakeError::Marker {
            path: path.to_string(),
            source,
        })
}

/// Lists one partition with the bundles of its hour: the lake's bundle type
/// sets first ([`contents`]), then as [`list_partition_in`].
pub async fn list_partition(
    store: &Arc<dyn ObjectStore>,
    partition: Partition,
) -> Result<PartitionListing> {
    let (_, sets) = contents(store).await?;
    list_partition_in(store, partition, &sets).await
}

/// Lists one partition: one LIST, one per bundle type set of `sets` holding
/// its table, then one GET of the newest log entry.
pub async fn list_partition_in(
    store: &Arc<dyn ObjectStore>,
    partition: Partition,
    sets: &[TypeSet],
) -> Result<PartitionListing> {
    // The newest entry can be cleaned up between LIST and GET only when a
    // newer one has been committed for a grace period: listing again finds it.
    for _ in 0..5 {
        if let Some(l) = try_list_partition(store, partition, sets).await? {
            return Ok(l);
        }
    }
    Err(LakeError::Other(format!(
        "{partition}: compaction log kept changing while listing"
    )))
}

async fn try_list_partition(
    store: &Arc<dyn ObjectStore>,
    partition: Partition,
    sets: &[TypeSet],
) -> Result<Option<PartitionListing>> {
    let prefix = partition.prefix();
    let all: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
    let mut bundles = Vec::new();
    for &types in sets.iter().filter(|s| s.contains(partition.hep_type)) {
        let hour = BundleHour {
            types,
            hour: partition.hour,
        };
        let found: Vec<ObjectMeta> = store.list(Some(&hour.prefix())).try_collect().await?;
        bundles.extend(found);
    }
    from_objects(store, partition, all, bundles).await
}

/// Whether a listed object is a bundle this partition reads: an ingest
/// attempt's file directly in an hour directory of bundles.
fn is_bundle_of(meta: &ObjectMeta, p: Partition) -> bool {
    BundleHour::parse(&meta.location).is_some_and(|b| {
        b.hour == p.hour
            && b.types.contains(p.hep_type)
            && meta.location.prefix_match(&b.prefix()).map(|r| r.count()) == Some(1)
            && matches!(
                FileName::parse(file_name(meta)),
                Some(FileName::KinesisBatch { .. })
            )
    })
}

/// A partition's listing from the objects LISTs found under its prefix and
/// under the bundle hours of its hour; None when its newest log entry
/// vanished before it was read.
async fn from_objects(
    store: &Arc<dyn ObjectStore>,
    partition: Partition,
    all: Vec<ObjectMeta>,
    bundles: Vec<ObjectMeta>,
) -> Result<Option<PartitionListing>> {
    let prefix = partition.prefix();
    let (mut files, mut log, mut legacy) = (Vec::new(), Vec::new(), Vec::new());
    files.extend(bundles.into_iter().filter(|m| is_bundle_of(m, partition)));
    for meta in all {
        let rel: Vec<_> = meta
            .location
            .prefix_match(&prefix)
            .map(|p| p.collect())
            .unwrap_or_default();
        match rel.as_slice() {
            [name] if FileName::parse(name.as_ref()).is_some() => files.push(meta),
            [dir, name] if dir.as_ref() == COMPACTIONS_DIR => {
                match MarkerName::parse(name.as_ref()) {
                    Some(MarkerName::Log(seq)) => log.push((seq, meta)),
                    Some(MarkerName::Legacy(_)) => legacy.push(meta),
                    None => {}
                }
            }
            _ => {}
        }
    }
    log.sort_by_key(|(seq, _)| *seq);
    let snapshot = match log.last() {
        Some((_, newest)) => match get_json::<Snapshot>(store, &newest.location).await? {
            Some(s) if s.format > LOG_FORMAT => {
                return Err(LakeError::NewerLogFormat {
                    path: newest.location.to_string(),
                    found: s.format,
                    supported: LOG_FORMAT,
                });
            }
            Some(s) => s,
            None => return Ok(None),
        },
        None => {
            let mut markers = Vec::with_capacity(legacy.len());
            for meta in &legacy {
                // A legacy marker vanishing is the first protocol's own clean-up.
                if let Some(m) = get_json::<LegacyMarker>(store, &meta.location).await? {
                    markers.push(m);
                }
            }
            Snapshot::from_legacy(&markers)
        }
    };
    Ok(Some(PartitionListing::new(
        partition, files, log, legacy, snapshot,
    )))
}

/// Names of the child directories directly under `prefix`.
pub async fn child_dirs(
    store: &Arc<dyn ObjectStore>,
    prefix: Option<&Path>,
) -> Result<Arc<Vec<String>>> {
    let listing = store.list_with_delimiter(prefix).await?;
    Ok(Arc::new(
        listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect(),
    ))
}

/// Where directory listings come from: the store, or a cache of it
/// ([`crate::listing_cache::ListingCache`]).
#[async_trait]
pub trait DirLister: Send + Sync {
    async fn child_dirs(&self, prefix: Option<&Path>) -> Result<Arc<Vec<String>>>;
}

#[async_trait]
impl DirLister for Arc<dyn ObjectStore> {
    async fn child_dirs(&self, prefix: Option<&Path>) -> Result<Arc<Vec<String>>> {
        child_dirs(self, prefix).await
    }
}

/// HEP types that have a table in the lake: a `hep_<type>/` prefix, or rows
/// in bundles not compacted yet.
pub async fn tables(dirs: &dyn DirLister) -> Result<Vec<u8>> {
    Ok(contents(dirs).await?.0)
}

/// The tables (as [`tables`]) and the type sets that have bundles: one LIST
/// of the root and, when it shows `_bundles/`, one of that.
pub async fn contents(dirs: &dyn DirLister) -> Result<(Vec<u8>, Vec<TypeSet>)> {
    let root = dirs.child_dirs(None).await?;
    let mut sets = Vec::new();
    if root.iter().any(|d| d == BUNDLES_DIR) {
        let bundles = Path::from(BUNDLES_DIR);
        sets.extend(
            dirs.child_dirs(Some(&bundles))
                .await?
                .iter()
                .filter_map(|d| TypeSet::parse_dir(d)),
        );
        sets.sort_unstable();
    }
    let mut t: Vec<u8> = root.iter().filter_map(|d| parse_table_name(d)).collect();
    t.extend(sets.iter().flat_map(|s| s.types().collect::<Vec<_>>()));
    t.sort_unstable();
    t.dedup();
    Ok((t, sets))
}

/// Every hour partition of `hep_type` on `day` (since the epoch), listed as
/// [`list_partition`] lists one, from one LIST of the day (a page per 1 000
/// objects) and a GET of each hour's newest log entry: a sweep over a month
/// costs a LIST per day rather than one per hour (LISTs are billed like PUTs,
/// GETs at a twelfth of that). An hour that cannot be read is reported beside the others.
/// `sets`: the lake's bundle type sets ([`contents`]); each holding the
/// table adds a LIST of its day.
pub async fn list_day(
    store: &Arc<dyn ObjectStore>,
    hep_type: u8,
    day: i64,
    sets: &[TypeSet],
) -> Result<Vec<(Partition, Result<PartitionListing>)>> {
    let at = |hour| Partition { hep_type, hour };
    let mut hours: BTreeMap<Partition, (Vec<ObjectMeta>, Vec<ObjectMeta>)> = BTreeMap::new();
    let mut objects = store.list(Some(&paths::date_prefix(hep_type, day)));
    while let Some(meta) = objects.try_next().await? {
        if let Some(p) = Partition::parse(&meta.location) {
            hours.entry(p).or_default().0.push(meta);
        }
    }
    for &types in sets.iter().filter(|s| s.contains(hep_type)) {
        let mut objects = store.list(Some(&Root::Bundles(types).date_prefix(day)));
        while let Some(meta) = objects.try_next().await? {
            if let Some(b) = BundleHour::parse(&meta.location) {
                hours.entry(at(b.hour)).or_default().1.push(meta);
            }
        }
    }
    let mut out = Vec::with_capacity(hours.len());
    for (p, (own, bundles)) in hours {
        let listing = match from_objects(store, p, own, bundles).await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => list_partition_in(store, p, sets).await,
            Err(e) => Err(e),
        };
        out.push((p, listing));
    }
    Ok(out)
}

/// The days (since the epoch) that have a date directory under `root`.
pub async fn days(dirs: &dyn DirLister, root: Root) -> Result<Vec<i64>> {
    let mut days: Vec<i64> = dirs
        .child_dirs(Some(&root.prefix()))
        .await?
        .iter()
        .filter_map(|d| paths::parse_date_dir(d))
        .collect();
    days.sort_unstable();
    Ok(days)
}

/// The hours (since the epoch) that have a directory under `root` within
/// `[lo_hour, hi_hour]` (inclusive, unbounded when None). Lists only the
/// date directories in range.
pub async fn hours(
    dirs: &dyn DirLister,
    root: Root,
    lo_hour: Option<i64>,
    hi_hour: Option<i64>,
) -> Result<Vec<i64>> {
    let in_range = |h: i64| lo_hour.is_none_or(|lo| h >= lo) && hi_hour.is_none_or(|hi| h <= hi);
    let mut out = Vec::new();
    for day in days(dirs, root).await? {
        let (first, last) = (day * 24, day * 24 + 23);
        if lo_hour.is_some_and(|lo| last < lo) || hi_hour.is_some_and(|hi| first > hi) {
            continue;
        }
        // One LIST per date in range discovers its hours.
        for hour in dirs.child_dirs(Some(&root.date_prefix(day))).await?.iter() {
            let Some(h) = paths::parse_hour_dir(hour) else {
                continue;
            };
            if in_range(first + h) {
                out.push(first + h);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Hour partitions of one table within `[lo_hour, hi_hour]` (as [`hours`]):
/// those with a directory of the table or of bundles holding it.
pub async fn partitions(
    dirs: &dyn DirLister,
    hep_type: u8,
    lo_hour: Option<i64>,
    hi_hour: Option<i64>,
) -> Result<Vec<Partition>> {
    let (_, sets) = contents(dirs).await?;
    let mut roots = vec![Root::Table(hep_type)];
    roots.extend(
        sets.into_iter()
            .filter(|s| s.contains(hep_type))
            .map(Root::Bundles),
    );
    let mut out = Vec::new();
    for root in roots {
        out.extend(hours(dirs, root, lo_hour, hi_hour).await?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out
        .into_iter()
        .map(|hour| Partition { hep_type, hour })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "c-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-0.parquet";
    const B: &str = "c-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-0.parquet";

    /// Today's log entry, byte for byte: a change to what is written must be
    /// a new [`LOG_FORMAT`], not a silent one.
    const GOLDEN_V1: &str = include_str!("../tests/golden/compaction_log_v1.json");

    fn two_commits() -> Snapshot {
        let s1 = Snapshot::default().next(
            &["w-1-1.parquet".into(), "w-1-2.parquet".into()],
            &[A.into()],
            1_764_410_000_000_000,
        );
        s1.next(
            &["w-1-3.parquet".into(), A.into()],
            &[B.into()],
            1_764_410_400_000_000,
        )
    }

    #[test]
    fn log_entries_are_pinned_by_a_golden_file() {
        let written = serde_json::to_string(&two_commits()).unwrap();
        assert_eq!(written, GOLDEN_V1.trim_end());
        let read: Snapshot = serde_json::from_str(GOLDEN_V1).unwrap();
        assert_eq!(read, two_commits());
        // Entries from before the field are today's format.
        let without: Snapshot =
            serde_json::from_str(&GOLDEN_V1.replacen("\"format\":1,", "", 1)).unwrap();
        assert_eq!(without, two_commits());
    }

    #[tokio::test]
    async fn a_newer_log_format_is_refused_with_a_clear_error() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let p = Partition::for_micros(1, 1_764_410_000_000_000);
        let newer = GOLDEN_V1.replacen("\"format\":1", "\"format\":2", 1);
        store
            .put(&p.marker(&MarkerName::Log(2)), newer.into_bytes().into())
            .await
            .unwrap();
        let err = list_partition(&store, p).await.unwrap_err();
        assert!(
            matches!(
                err,
                LakeError::NewerLogFormat {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade"), "{err}");
        // Format 1 reads.
        store
            .put(
                &p.marker(&MarkerName::Log(3)),
                GOLDEN_V1.as_bytes().to_vec().into(),
            )
            .await
            .unwrap();
        assert_eq!(
            list_partition(&store, p).await.unwrap().snapshot,
            two_commits()
        );
    }

    #[test]
    fn next_moves_inputs_from_live_to_retired() {
        let s0 = Snapshot::default();
        let s1 = s0.next(
            &["w-1-1.parquet".into(), "w-1-2.parquet".into()],
            &[A.into()],
            10,
        );
        let s2 = s1.next(&[A.into(), "w-1-3.parquet".into()], &[B.into()], 20);
        assert_eq!(s2.seq, 2);
        assert_eq!(s2.live, BTreeSet::from([B.to_owned()]));
        let r = s2.retired_set();
        for n in ["w-1-1.parquet", "w-1-2.parquet", "w-1-3.parquet", A] {
            assert!(!s2.admits(&r, n), "{n}");
        }
        assert!(s2.admits(&r, B) && s2.admits(&r, "w-1-4.parquet"));
        // An output no entry names (a job that never committed) is not admitted.
        assert!(!s2.admits(&r, "c-cccccccccccccccccccccccccccccccc-0.parquet"));
    }

    #[test]
    fn legacy_markers_count_when_they_exist() {
        // A's small output merged by B must not hide A's other output.
        let a1 = "c-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-1.parquet";
        let markers = [
            LegacyMarker {
                id: "a".repeat(32),
                committed_micros: 1,
                outputs: vec![A.into(), a1.into()],
                replaces: vec!["x-1-1.parquet".into()],
            },
            LegacyMarker {
                id: "b".repeat(32),
                committed_micros: 2,
                outputs: vec![B.into()],
                replaces: vec![a1.into(), "x-1-1.parquet".into()],
            },
        ];
        let s = Snapshot::from_legacy(&markers);
        let r = s.retired_set();
        assert!(s.admits(&r, A) && s.admits(&r, B));
        assert!(!s.admits(&r, a1) && !s.admits(&r, "x-1-1.parquet"));
    }
}
