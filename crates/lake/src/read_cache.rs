//! What a query reads from a Parquet file besides its data pages, kept
//! across queries: the footer with its page index (DataFusion's file
//! metadata cache, in the shared RuntimeEnv), the bloom filters and the
//! statistics of the lookup columns (here). Lake files are never modified
//! and their names never reused, so an entry keyed by object key and size
//! can never be stale; each cache is bounded (in bytes, or entries for the
//! statistics) and evicts the least recently used entry.
use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::common::{ColumnStatistics, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::cache::lru_queue::LruQueue;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

use crate::paths::Partition;
use crate::schema::{TIME, bloom_columns, query_schema_for};

/// One bloom filter: which file (key and size) and which bytes of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BloomKey {
    location: Path,
    size: u64,
    range: Range<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes held now.
    pub bytes: usize,
}

/// Hits and misses of one cache.
#[derive(Debug, Default)]
pub(crate) struct HitCount {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl HitCount {
    /// Counts `found` as a hit or a miss, and passes it on.
    pub(crate) fn record<V>(&self, found: Option<V>) -> Option<V> {
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// (hits, misses) so far.
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// Bloom filter bytes, bounded in bytes, least recently used evicted.
pub struct BloomCache {
    limit: usize,
    inner: Mutex<BloomEntries>,
    count: HitCount,
}

struct BloomEntries {
    lru: LruQueue<BloomKey, Bytes>,
    bytes: usize,
}

impl BloomCache {
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            limit: limit_bytes,
            inner: Mutex::new(BloomEntries {
                lru: LruQueue::new(),
                bytes: 0,
            }),
            count: HitCount::default(),
        }
    }

    fn get(&self, key: &BloomKey) -> Option<Bytes> {
        let found = self
            .inner
            .lock()
            .expect("not poisoned")
            .lru
            .get(key)
            .cloned();
        self.count.record(found)
    }

    fn put(&self, key: BloomKey, value: Bytes) {
        if value.len() > self.limit {
            return;
        }
        let mut e = self.inner.lock().expect("not poisoned");
        e.bytes += value.len();
        if let Some(old) = e.lru.put(key, value) {
            e.bytes -= old.len();
        }
        while e.bytes > self.limit {
            match e.lru.pop() {
                Some((_, v)) => e.bytes -= v.len(),
                None => break,
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (hits, misses) = self.count.get();
        CacheStats {
            hits,
            misses,
            bytes: self.inner.lock().expect("not poisoned").bytes,
        }
    }
}

impl std::fmt::Debug for BloomCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BloomCache({:?} of {} bytes)", self.stats(), self.limit)
    }
}

/// Each file's row count and the min/max of the columns a lookup filters on,
/// derived from its cached footer: given to the scan as the file's statistics,
/// they let DataFusion skip a file before opening it. Bounded in entries
/// (about 1 KiB each: the other columns' statistics are left unknown;
/// `QueryLimits::file_stats_entries`).
pub struct FileStats {
    max_entries: usize,
    inner: Mutex<LruQueue<(Path, u64), Arc<Statistics>>>,
}

impl std::fmt::Debug for FileStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileStats({} at most)", self.max_entries)
    }
}

impl FileStats {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            inner: Mutex::new(LruQueue::new()),
        }
    }

    pub fn get(&self, location: &Path, size: u64) -> Option<Arc<Statistics>> {
        let key = (location.clone(), size);
        self.inner.lock().expect("not poisoned").get(&key).cloned()
    }

    fn put(&self, location: &Path, size: u64, md: &ParquetMetaData) {
        let Some(p) = Partition::parse(location) else {
            return;
        };
        let schema = query_schema_for(p.hep_type);
        let Ok(mut stats) = DFParquetMetadata::statistics_from_parquet_metadata(md, &schema) else {
            return;
        };
        let keep: Vec<usize> = std::iter::once(TIME)
            .chain(bloom_columns(p.hep_type).iter().copied())
            .filter_map(|c| schema.index_of(c).ok())
            .collect();
        for (i, c) in stats.column_statistics.iter_mut().enumerate() {
            if !keep.contains(&i) {
                *c = ColumnStatistics::new_unknown();
            }
        }
        let mut q = self.inner.lock().expect("not poisoned");
        q.put((location.clone(), size), Arc::new(stats));
        while q.len() > self.max_entries {
            q.pop();
        }
    }
}

/// DataFusion's metadata-caching reader, with bloom filter reads served
/// from a [`BloomCache`].
#[derive(Debug)]
pub struct CachingReaderFactory {
    inner: CachedParquetFileReaderFactory,
    blooms: Arc<BloomCache>,
    stats: Arc<FileStats>,
}

impl CachingReaderFactory {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        metadata: Arc<FileMetadataCache>,
        blooms: Arc<BloomCache>,
        stats: Arc<FileStats>,
    ) -> Self {
        Self {
            inner: CachedParquetFileReaderFactory::new(store, metadata),
            blooms,
            stats,
        }
    }
}

impl ParquetFileReaderFactory for CachingReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let (location, size) = (file.object_meta.location.clone(), file.object_meta.size);
        let inner = self
            .inner
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(BloomCachingReader {
            inner,
            blooms: self.blooms.clone(),
            stats: self.stats.clone(),
            location,
            size,
            bloom_offsets: HashSet::new(),
        }))
    }
}

struct BloomCachingReader {
    inner: Box<dyn AsyncFileReader + Send>,
    blooms: Arc<BloomCache>,
    stats: Arc<FileStats>,
    location: Path,
    size: u64,
    /// Where this file's bloom filters start, from its metadata: a read
    /// starting there is a bloom filter and nothing else.
    bloom_offsets: HashSet<u64>,
}

fn bloom_offsets(md: &ParquetMetaData) -> HashSet<u64> {
    md.row_groups()
        .iter()
        .flat_map(|rg| rg.columns())
        .filter_map(|c| c.bloom_filter_offset())
        .filter_map(|o| u64::try_from(o).ok())
        .collect()
}

impl AsyncFileReader for BloomCachingReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        if !self.bloom_offsets.contains(&range.start) {
            return self.inner.get_bytes(range);
        }
        let key = BloomKey {
            location: self.location.clone(),
            size: self.size,
            range: range.clone(),
        };
        if let Some(b) = self.blooms.get(&key) {
            return futures::future::ready(Ok(b)).boxed();
        }
        async move {
            let b = self.inner.get_bytes(range).await?;
            self.blooms.put(key, b.clone());
            Ok(b)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        // DataFusion asks for the footer alone, then loads the page index
        // itself when a predicate can use it, past the metadata cache: every
        // query decoded it again. Asking for both caches both.
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move {
            let md = self.inner.get_metadata(Some(&options)).await?;
            self.bloom_offsets = bloom_offsets(&md);
            if self.stats.get(&self.location, self.size).is_none() {
                self.stats.put(&self.location, self.size, &md);
            }
            Ok(md)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> BloomKey {
        BloomKey {
            location: Path::from("hep_1/f.parquet"),
            size: 100,
            range: n..n + 10,
        }
    }

    #[test]
    fn bounded_in_bytes_least_recently_used_goes_first() {
        let c = BloomCache::new(25);
        c.put(key(0), Bytes::from(vec![0; 10]));
        c.put(key(1), Bytes::from(vec![1; 10]));
        assert!(c.get(&key(0)).is_some()); // 1 is now the least recently used
        c.put(key(2), Bytes::from(vec![2; 10]));
        assert!(c.get(&key(1)).is_none());
        assert!(c.get(&key(0)).is_some() && c.get(&key(2)).is_some());
        assert_eq!(c.stats().bytes, 20);
        // Larger than the whole budget: not kept, nothing evicted for it.
        c.put(key(3), Bytes::from(vec![3; 26]));
        assert!(c.get(&key(3)).is_none());
        assert_eq!(c.stats().bytes, 20);
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (3, 2));
    }
}
