//! Lake listings kept briefly between queries: the table, date and hour
//! directories, and each partition's files and compaction snapshot. Unlike
//! Parquet files these change, so an entry lives at most `ttl`; a writer in
//! the same process ([`WatchedStore`]) drops what its writes make stale at
//! once. A writer elsewhere (the ingest Lambda, another host) is seen within
//! `ttl`.
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

use crate::Result;
use crate::calls::CallsTable;
use crate::catalog::{DirLister, PartitionListing, child_dirs, contents, list_partition_in};
use crate::paths::{BundleHour, Partition, Root};
use crate::read_cache::HitCount;

/// Entries beyond this many trigger a sweep of the expired ones.
const SWEEP_ABOVE: usize = 4096;

struct Timed<V> {
    at: Instant,
    value: V,
}

struct Entries<K, V>(HashMap<K, Timed<V>>);

impl<K: Eq + Hash, V: Clone> Entries<K, V> {
    fn fresh(&self, k: &K, ttl: Duration) -> Option<V> {
        self.0
            .get(k)
            .filter(|t| t.at.elapsed() < ttl)
            .map(|t| t.value.clone())
    }

    fn insert(&mut self, k: K, value: V, at: Instant, ttl: Duration) {
        if self.0.len() >= SWEEP_ABOVE {
            self.0.retain(|_, t| t.at.elapsed() < ttl);
        }
        self.0.insert(k, Timed { at, value });
    }
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

#[derive(Default)]
struct State {
    /// Child directory names by parent prefix ("" for the root).
    dirs: Entries<String, Arc<Vec<String>>>,
    partitions: Entries<Partition, Arc<PartitionListing>>,
    /// The record files the `calls` Delta table holds, by hour.
    calls: Entries<(), Arc<CallFiles>>,
}

/// The `calls` table's files by hour (`calls::CallsTable::held`).
pub type CallFiles = BTreeMap<i64, Vec<ObjectMeta>>;

pub struct ListingCache {
    store: Arc<dyn ObjectStore>,
    ttl: Duration,
    state: Mutex<State>,
    /// Bumped by every change; a listing that started before one is not kept.
    generation: AtomicU64,
    count: HitCount,
}

impl fmt::Debug for ListingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListingCache(ttl {:?})", self.ttl)
    }
}

impl ListingCache {
    /// `ttl` zero keeps nothing: every query lists.
    pub fn new(store: Arc<dyn ObjectStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            state: Mutex::default(),
            generation: AtomicU64::new(0),
            count: HitCount::default(),
        }
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        self.count.get()
    }

    /// The fresh entry `pick` finds for `key`, or what `list` finds, kept
    /// unless something changed while it listed.
    async fn get_or_list<K, V, F>(
        &self,
        key: K,
        pick: fn(&mut State) -> &mut Entries<K, V>,
        list: F,
    ) -> Result<V>
    where
        K: Eq + Hash,
        V: Clone,
        F: Future<Output = Result<V>>,
    {
        let ttl = self.ttl;
        let found = pick(&mut self.state.lock().expect("not poisoned")).fresh(&key, ttl);
        if let Some(v) = self.count.record(found) {
            return Ok(v);
        }
        let (generation, at) = (self.generation.load(Ordering::SeqCst), Instant::now());
        let v = list.await?;
        let mut s = self.state.lock().expect("not poisoned");
        if self.generation.load(Ordering::SeqCst) == generation {
            pick(&mut s).insert(key, v.clone(), at, ttl);
        }
        Ok(v)
    }

    /// One partition's files and snapshot.
    pub async fn partition(&self, p: Partition) -> Result<Arc<PartitionListing>> {
        self.get_or_list(p, |s| &mut s.partitions, async {
            let (_, sets) = contents(self).await?;
            Ok(Arc::new(list_partition_in(&self.store, p, &sets).await?))
        })
        .await
    }

    /// The files of the `calls` table, by hour: one read of its Delta log.
    pub async fn calls(&self) -> Result<Arc<CallFiles>> {
        self.get_or_list((), |s| &mut s.calls, async {
            let Some(table) = CallsTable::load(&self.store).await? else {
                return Ok(Arc::new(CallFiles::new()));
            };
            let files = table
                .held()?
                .into_iter()
                .map(|(hour, files)| {
                    let metas = files
                        .into_iter()
                        .map(|(r, size)| ObjectMeta {
                            location: r.path(),
                            last_modified: chrono::DateTime::UNIX_EPOCH,
                            size,
                            e_tag: None,
                            version: None,
                        })
                        .collect();
                    (hour, metas)
                })
                .collect();
            Ok(Arc::new(files))
        })
        .await
    }

    /// What a write, copy or delete of `path` makes stale.
    pub fn changed(&self, path: &Path) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut s = self.state.lock().expect("not poisoned");
        if path.prefix_matches(&Root::Calls.prefix()) {
            s.calls.0.clear();
        }
        if let Some(p) = Partition::parse(path) {
            s.partitions.0.remove(&p);
        }
        if let Some(b) = BundleHour::parse(path) {
            for hep_type in b.types.types() {
                s.partitions.0.remove(&Partition {
                    hep_type,
                    hour: b.hour,
                });
            }
        }
        // A new table, date or hour directory: its parent's listing lacks it.
        let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_owned()).collect();
        for depth in 0..parts.len().saturating_sub(1).min(4) {
            let parent = parts[..depth].join("/");
            let lacks_child = s
                .dirs
                .0
                .get(&parent)
                .is_some_and(|t| !t.value.contains(&parts[depth]));
            if lacks_child {
                s.dirs.0.remove(&parent);
            }
        }
    }
}

#[async_trait]
impl DirLister for ListingCache {
    async fn child_dirs(&self, prefix: Option<&Path>) -> Result<Arc<Vec<String>>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.get_or_list(key, |s| &mut s.dirs, child_dirs(&self.store, prefix))
            .await
    }
}

/// The lake store as this process's writer and compactor use it: each
/// write, copy or delete tells the query engine's [`ListingCache`].
#[derive(Debug)]
pub struct WatchedStore {
    inner: Arc<dyn ObjectStore>,
    listings: Arc<ListingCache>,
}

impl WatchedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, listings: Arc<ListingCache>) -> Self {
        Self { inner, listings }
    }
}

impl fmt::Display for WatchedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Watched({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for WatchedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await;
        self.listings.changed(location);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(WatchedUpload {
            inner,
            location: location.clone(),
            listings: self.listings.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let listings = self.listings.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| {
                if let Ok(p) = r {
                    listings.changed(p);
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        self.listings.changed(to);
        r
    }
}

#[derive(Debug)]
struct WatchedUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    listings: Arc<ListingCache>,
}

#[async_trait]
impl MultipartUpload for WatchedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let r = self.inner.complete().await;
        self.listings.changed(&self.location);
        r
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    fn p(s: &str) -> Path {
        Path::from(s)
    }

    #[tokio::test]
    async fn a_watched_write_drops_exactly_the_listings_it_makes_stale() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cache = Arc::new(ListingCache::new(store.clone(), Duration::from_secs(600)));
        let watched = WatchedStore::new(store.clone(), cache.clone());
        let put = |k: &'static str| {
            let w = &watched;
            async move { w.put(&p(k), PutPayload::from_static(b"x")).await.unwrap() }
        };
        put("hep_1/date=2025-01-01/hour=10/hepop-1-1.parquet").await;
        let table = p("hep_1");
        let dates = || cache.child_dirs(Some(&table));
        assert_eq!(*dates().await.unwrap(), vec!["date=2025-01-01"]);
        let (hits, misses) = cache.stats();
        dates().await.unwrap();
        assert_eq!(cache.stats(), (hits + 1, misses), "served from the cache");

        // A file in a known date keeps the date listing; a new date drops it.
        put("hep_1/date=2025-01-01/hour=11/hepop-1-2.parquet").await;
        dates().await.unwrap();
        assert_eq!(cache.stats(), (hits + 2, misses));
        put("hep_1/date=2025-01-02/hour=00/hepop-1-3.parquet").await;
        assert_eq!(
            *dates().await.unwrap(),
            vec!["date=2025-01-01", "date=2025-01-02"]
        );
        assert_eq!(cache.stats().1, misses + 1);

        // A partition's listing is dropped by a write or a delete in it.
        let part = Partition::parse(&p("hep_1/date=2025-01-01/hour=10")).unwrap();
        assert_eq!(cache.partition(part).await.unwrap().files.len(), 1);
        put("hep_1/date=2025-01-01/hour=10/hepop-1-4.parquet").await;
        assert_eq!(cache.partition(part).await.unwrap().files.len(), 2);
        watched
            .delete(&p("hep_1/date=2025-01-01/hour=10/hepop-1-1.parquet"))
            .await
            .unwrap();
        assert_eq!(cache.partition(part).await.unwrap().files.len(), 1);
        // An unwatched write is not seen while the listing is fresh.
        store
            .put(
                &p("hep_1/date=2025-01-01/hour=10/hepop-1-5.parquet"),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
        assert_eq!(cache.partition(part).await.unwrap().files.len(), 1);
    }
}
