//! Counters for /metrics (Prometheus text) and the periodic log line.
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Datagrams and stream frames taken in.
    pub received: AtomicU64,
    /// Of those, decoded into HEP messages.
    pub decoded: AtomicU64,
    /// Malformed: counted and dropped.
    pub invalid: AtomicU64,
    /// Rows stored in Parquet files.
    pub written: AtomicU64,
    /// Decoded but never stored (queue full, storage failing).
    pub dropped: AtomicU64,
    pub tcp_connections: AtomicU64,
    /// Bytes skipped on TCP streams while resynchronising on the HEP magic.
    pub tcp_garbage_bytes: AtomicU64,
    pub files_written: AtomicU64,
    pub write_errors: AtomicU64,
    pub compactions: AtomicU64,
}

const HELP: [(&str, &str, &str); 10] = [
    ("received", "counter", "HEP datagrams and stream frames received"),
    ("decoded", "counter", "HEP messages decoded"),
    ("invalid", "counter", "malformed packets dropped"),
    ("written", "counter", "rows written to Parquet"),
    ("dropped", "counter", "decoded messages lost before storage"),
    ("tcp_connections", "counter", "TCP connections accepted"),
    ("tcp_garbage_bytes", "counter", "bytes skipped resynchronising TCP streams"),
    ("files_written", "counter", "Parquet files written"),
    ("write_errors", "counter", "failed Parquet writes (retried)"),
    ("compactions", "counter", "partitions compacted"),
];

impl Metrics {
    fn values(&self) -> [u64; 10] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            l(&self.received),
            l(&self.decoded),
            l(&self.invalid),
            l(&self.written),
            l(&self.dropped),
            l(&self.tcp_connections),
            l(&self.tcp_garbage_bytes),
            l(&self.files_written),
            l(&self.write_errors),
            l(&self.compactions),
        ]
    }

    pub fn prometheus(&self, buffered: u64) -> String {
        let mut out = String::new();
        for ((name, kind, help), v) in HELP.iter().zip(self.values()) {
            let _ = writeln!(out, "# HELP hepop_{name}_total {help}\n# TYPE hepop_{name}_total {kind}\nhepop_{name}_total {v}");
        }
        let _ = writeln!(out, "# HELP hepop_buffered_rows rows waiting to be written\n# TYPE hepop_buffered_rows gauge\nhepop_buffered_rows {buffered}");
        out
    }

    pub fn summary(&self) -> String {
        HELP.iter().zip(self.values()).take(5).map(|((n, _, _), v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")
    }
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
