//! The server's counters: the listeners' plus the writer's and compactor's.
use std::sync::atomic::AtomicU64;

use listen::{Counters, get, prometheus};

#[derive(Debug, Default)]
pub struct Metrics {
    pub listen: std::sync::Arc<Counters>,
    /// Rows stored in Parquet files.
    pub written: AtomicU64,
    pub files_written: AtomicU64,
    pub write_errors: AtomicU64,
    pub compactions: AtomicU64,
}

impl Metrics {
    fn rows(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut rows = self.listen.rows();
        rows.extend([
            ("written", "rows written to Parquet", get(&self.written)),
            ("files_written", "Parquet files written", get(&self.files_written)),
            ("write_errors", "failed Parquet writes (retried)", get(&self.write_errors)),
            ("compactions", "partitions compacted", get(&self.compactions)),
        ]);
        rows
    }

    pub fn prometheus(&self, buffered: u64) -> String {
        prometheus("hepop", &self.rows(), &[("buffered_rows", "rows waiting to be written", buffered)])
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
