//! Buffers decoded messages per hour partition and cuts them into Parquet
//! files on size or age, so data is queryable within seconds.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use hep::HepMessage;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::Result;
use crate::parquet_io::{self, EncodeOptions};
use crate::paths::{FileName, Partition};
use crate::rows::{AlegHeaders, BatchBuilder, default_aleg_headers};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Goes into file names so several writers never collide.
    pub writer_id: String,
    /// A buffer becomes a file at this many rows...
    pub max_rows: usize,
    /// ...or this many (approximate) bytes...
    pub max_bytes: usize,
    /// ...or when its oldest row is this old.
    pub max_age: Duration,
    /// Where SIP extraction finds the A leg's Call-ID.
    pub aleg_headers: AlegHeaders,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            writer_id: "hepop".into(),
            max_rows: 200_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(10),
            aleg_headers: default_aleg_headers(),
        }
    }
}

struct Buffer {
    rows: BatchBuilder,
    since: Instant,
}

/// Rows ready to become one Parquet file.
pub struct PendingFile {
    pub partition: Partition,
    pub path: Path,
    pub batch: RecordBatch,
}

impl PendingFile {
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Encodes and stores the file (encoding runs off the async threads).
    pub async fn write(&self, store: &Arc<dyn ObjectStore>) -> Result<()> {
        let batch = self.batch.clone();
        let hep_type = self.partition.hep_type;
        let bytes = tokio::task::spawn_blocking(move || {
            parquet_io::encode(&[batch], hep_type, EncodeOptions::INGEST)
        })
        .await
        .map_err(|e| crate::LakeError::Other(format!("encoder task: {e}")))??;
        parquet_io::put(store, &self.path, bytes).await
    }
}

/// One file per partition the messages fall in, each named `name` inside
/// its partition. Deterministic: the same messages and name give the same
/// objects, so a retried write overwrites instead of duplicating.
pub fn files_named<'a>(
    msgs: impl IntoIterator<Item = &'a HepMessage>,
    name: &FileName,
    aleg_headers: &AlegHeaders,
) -> Vec<PendingFile> {
    let mut builders: HashMap<Partition, BatchBuilder> = HashMap::new();
    for m in msgs {
        let p = Partition::for_micros(m.proto_type, m.time_micros());
        builders
            .entry(p)
            .or_insert_with(|| BatchBuilder::with_aleg_headers(m.proto_type, aleg_headers.clone()))
            .append(m);
    }
    builders
        .into_iter()
        .map(|(p, mut b)| PendingFile {
            partition: p,
            path: p.file(name),
            batch: b.finish(),
        })
        .collect()
}

/// In-memory write buffer. Pure bookkeeping: I/O happens in [`PendingFile::write`].
pub struct WriteBuffer {
    cfg: WriterConfig,
    buffers: HashMap<Partition, Buffer>,
    seq: u64,
    rows: usize,
}

impl WriteBuffer {
    pub fn new(cfg: WriterConfig) -> Self {
        Self {
            cfg,
            buffers: HashMap::new(),
            seq: 0,
            rows: 0,
        }
    }

    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// Adds one message to its table's current hour buffer.
    pub fn append(&mut self, m: &HepMessage) {
        let p = Partition::for_micros(m.proto_type, m.time_micros());
        self.buffers
            .entry(p)
            .or_insert_with(|| Buffer {
                rows: BatchBuilder::with_aleg_headers(m.proto_type, self.cfg.aleg_headers.clone()),
                since: Instant::now(),
            })
            .rows
            .append(m);
        self.rows += 1;
    }

    /// Takes every buffer that is full or old enough (all of them when `all`).
    pub fn take_due(&mut self, now: Instant, all: bool) -> Vec<PendingFile> {
        let cfg = &self.cfg;
        let due: Vec<Partition> = self
            .buffers
            .iter()
            .filter(|(_, b)| {
                all || b.rows.len() >= cfg.max_rows
                    || b.rows.approx_bytes() >= cfg.max_bytes
                    || now.duration_since(b.since) >= cfg.max_age
            })
            .map(|(p, _)| *p)
            .collect();
        due.into_iter()
            .filter_map(|p| {
                let mut b = self.buffers.remove(&p)?;
                self.rows -= b.rows.len();
                self.seq += 1;
                let name = FileName::Server {
                    writer: self.cfg.writer_id.clone(),
                    micros: chrono::Utc::now().timestamp_micros(),
                    seq: self.seq,
                };
                Some(PendingFile {
                    partition: p,
                    path: p.file(&name),
                    batch: b.rows.finish(),
                })
            })
            .collect()
    }
}
