//! The server's counters: the listeners' plus the writer's and compactor's.
use std::sync::atomic::AtomicU64;

use listen::{Counters, add, get, prometheus};

#[derive(Debug, Default)]
pub struct Metrics {
    pub listen: std::sync::Arc<Counters>,
    pub http: std::sync::Arc<crate::http_server::HttpCounters>,
    /// Rows stored in Parquet files.
    pub written: AtomicU64,
    pub files_written: AtomicU64,
    pub write_errors: AtomicU64,
    /// Capture times outside the accepted window, stored at arrival time.
    pub time_replaced: AtomicU64,
    pub compaction_jobs: AtomicU64,
    pub compaction_conflicts: AtomicU64,
    pub compaction_errors: AtomicU64,
    pub compaction_deleted: AtomicU64,
    pub quarantined_files: AtomicU64,
    pub expired_hours: AtomicU64,
    pub expired_objects: AtomicU64,
    pub delta_commits: AtomicU64,
    pub delta_conflicts: AtomicU64,
    /// Hours of call records built, and the records they held.
    pub call_hours_built: AtomicU64,
    pub call_records: AtomicU64,
    /// Hours of call records not built: more SIP rows than the memory allows.
    pub call_builds_skipped: AtomicU64,
    /// Seconds the Delta tables were behind HEPop's view after the last run.
    pub delta_lag_secs: AtomicU64,
    /// heplify-server's SIP, RTCP and packet series of what was received.
    pub capture: std::sync::Mutex<hep_metrics::CaptureMetrics>,
}

impl Metrics {
    fn rows(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut rows = self.listen.rows();
        rows.extend(self.http.rows());
        rows.extend([
            ("written", "rows written to Parquet", get(&self.written)),
            (
                "files_written",
                "Parquet files written",
                get(&self.files_written),
            ),
            (
                "write_errors",
                "failed Parquet writes (retried)",
                get(&self.write_errors),
            ),
            (
                "time_replaced",
                "messages whose capture time was outside the window (stored at arrival)",
                get(&self.time_replaced),
            ),
            (
                "compaction_jobs",
                "compaction jobs committed",
                get(&self.compaction_jobs),
            ),
            (
                "compaction_conflicts",
                "compaction jobs overtaken by another compactor",
                get(&self.compaction_conflicts),
            ),
            (
                "compaction_errors",
                "partitions a compaction run could not compact",
                get(&self.compaction_errors),
            ),
            (
                "compaction_deleted",
                "replaced files and old log entries deleted",
                get(&self.compaction_deleted),
            ),
            (
                "quarantined_files",
                "unreadable Parquet files moved to _quarantine/",
                get(&self.quarantined_files),
            ),
            (
                "expired_partitions",
                "hour partitions deleted by retention",
                get(&self.expired_hours),
            ),
            (
                "expired_objects",
                "objects deleted by retention",
                get(&self.expired_objects),
            ),
            (
                "delta_commits",
                "commits to the lake's Delta tables",
                get(&self.delta_commits),
            ),
            (
                "delta_conflicts",
                "Delta commits another commit overtook (mirrored again)",
                get(&self.delta_conflicts),
            ),
            (
                "call_record_builds",
                "hours of call records built (calls table)",
                get(&self.call_hours_built),
            ),
            (
                "call_records_built",
                "call records the hours built held",
                get(&self.call_records),
            ),
            (
                "call_record_builds_skipped",
                "hours of call records not built: more SIP rows than --compact-memory-mb allows",
                get(&self.call_builds_skipped),
            ),
        ]);
        rows
    }

    pub fn record_compaction(&self, r: &lake::compact::CompactionReport) {
        add(&self.compaction_jobs, r.jobs as u64);
        add(&self.compaction_conflicts, r.conflicts as u64);
        add(&self.compaction_errors, r.errors.len() as u64);
        add(&self.compaction_deleted, r.deleted as u64);
        add(&self.quarantined_files, r.quarantined as u64);
        add(&self.expired_hours, r.expired_hours as u64);
        add(&self.expired_objects, r.expired_objects as u64);
        add(&self.delta_commits, r.delta_commits as u64);
        add(&self.delta_conflicts, r.delta_conflicts as u64);
        add(&self.call_hours_built, r.call_hours_built as u64);
        add(&self.call_records, r.call_records as u64);
        add(&self.call_builds_skipped, r.call_hours_too_large as u64);
        self.delta_lag_secs
            .store(r.delta_lag_secs, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn prometheus(
        &self,
        buffered: u64,
        queued_bytes: u64,
        cache: &lake::engine::CacheReport,
    ) -> String {
        let mut gauges = self.listen.gauges();
        gauges.extend([
            (
                "query_metadata_cache_files",
                "Parquet files whose footer and page index the query engine keeps",
                cache.metadata_entries as u64,
            ),
            (
                "query_bloom_cache_bytes",
                "bytes of bloom filters the query engine keeps",
                cache.blooms.bytes as u64,
            ),
        ]);
        let mut counters = self.rows();
        counters.extend([
            (
                "query_bloom_cache_hits",
                "bloom filter reads served from memory",
                cache.blooms.hits,
            ),
            (
                "query_bloom_cache_misses",
                "bloom filter reads from the lake",
                cache.blooms.misses,
            ),
            (
                "query_listing_cache_hits",
                "directory and partition listings reused",
                cache.listing_hits,
            ),
            (
                "query_listing_cache_misses",
                "directory and partition listings read from the lake",
                cache.listing_misses,
            ),
            (
                "query_window_row_groups_inside",
                "row groups of hours a query's time window cuts, read unfiltered: every row inside",
                cache.row_groups.inside,
            ),
            (
                "query_window_row_groups_cut",
                "row groups a query's time window cuts, filtered row by row",
                cache.row_groups.cut,
            ),
            (
                "query_window_row_groups_outside",
                "row groups of hours a query's time window cuts, not read: no row inside",
                cache.row_groups.outside,
            ),
            (
                "query_lookup_row_groups_kept",
                "row groups a lookup's statistics and bloom filters left to read",
                cache.row_groups.lookup_kept,
            ),
            (
                "query_lookup_row_groups_ruled_out",
                "row groups a lookup's statistics and bloom filters ruled out at planning: not read",
                cache.row_groups.lookup_ruled_out,
            ),
        ]);
        gauges.push(("buffered_rows", "rows waiting to be written", buffered));
        gauges.push((
            "http_open_connections",
            "HTTP(S) connections open (bound: --http-max-connections)",
            get(&self.http.open),
        ));
        gauges.push((
            "delta_lag_seconds",
            "age of the oldest file HEPop serves that the Delta tables may not hold yet, after the last compaction run",
            get(&self.delta_lag_secs),
        ));
        gauges.push((
            "queued_bytes",
            "message bytes queued for the writer (bound: --queue-mb)",
            queued_bytes,
        ));
        let mut text = prometheus("hepop", &counters, &gauges);
        // A panic elsewhere while holding the lock leaves counts still worth showing.
        let capture = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        capture.prometheus(&mut text);
        text
    }

    /// received, decoded, invalid, written, dropped: the log line.
    pub fn summary(&self) -> String {
        let l = &self.listen;
        format!(
            "received={} decoded={} invalid={} written={} dropped={}",
            get(&l.received),
            get(&l.decoded),
            get(&l.invalid),
            get(&self.written),
            get(&l.dropped)
        )
    }
}
