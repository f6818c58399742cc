//! Buffers decoded messages per hour partition and cuts them into Parquet
//! files on size or age, so data is queryable within seconds.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use hep::HepMessage;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::Result;
use crate::parquet_io::{self, EncodeOptions};
use crate::paths::{BundleHour, FileName, Partition, TypeSet};
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
    pub path: Path,
    /// One table's rows; or, in a bundle, each table's, ascending by type.
    pub tables: Vec<(u8, RecordBatch)>,
}

impl PendingFile {
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|(_, b)| b.num_rows()).sum()
    }

    /// Encodes and stores the file (encoding runs off the async threads).
    pub async fn write(&self, store: &Arc<dyn ObjectStore>) -> Result<()> {
        let tables = self.tables.clone();
        let bytes = tokio::task::spawn_blocking(move || match tables.as_slice() {
            [(hep_type, batch)] => parquet_io::encode(
                std::slice::from_ref(batch),
                *hep_type,
                EncodeOptions::INGEST,
            ),
            _ => parquet_io::encode_bundle(&tables, EncodeOptions::INGEST),
        })
        .await
        .map_err(|e| crate::LakeError::Other(format!("encoder task: {e}")))??;
        parquet_io::put(store, &self.path, bytes).await
    }
}

/// Tables of one hour share one object, a bundle, when none of them has
/// more rows than this: one row group each (an ingest file's time slice).
/// A quiet stream's cost is its objects (docs/COST.md).
pub const BUNDLE_MAX_ROWS: usize = EncodeOptions::INGEST.row_group_rows;

/// One file per hour the messages fall in, holding every table's rows (a
/// bundle), or, when a table of the hour has more than `BUNDLE_MAX_ROWS`
/// rows, one file per partition, each named `name`. Deterministic: the same
/// messages and name give the same objects, so a retried write overwrites
/// instead of duplicating.
pub fn files_named<'a>(
    msgs: impl IntoIterator<Item = &'a HepMessage>,
    name: &FileName,
    aleg_headers: &AlegHeaders,
) -> Vec<PendingFile> {
    files_bundled_up_to(msgs, name, aleg_headers, BUNDLE_MAX_ROWS)
}

/// [`files_named`], bundling tables of at most `bundle_max_rows` rows (0: never).
pub fn files_bundled_up_to<'a>(
    msgs: impl IntoIterator<Item = &'a HepMessage>,
    name: &FileName,
    aleg_headers: &AlegHeaders,
    bundle_max_rows: usize,
) -> Vec<PendingFile> {
    let mut builders: BTreeMap<Partition, BatchBuilder> = BTreeMap::new();
    for m in msgs {
        let p = Partition::for_micros(m.proto_type, m.time_micros());
        builders
            .entry(p)
            .or_insert_with(|| BatchBuilder::with_aleg_headers(m.proto_type, aleg_headers.clone()))
            .append(m);
    }
    let mut by_hour: BTreeMap<i64, Vec<(u8, RecordBatch)>> = BTreeMap::new();
    for (p, mut b) in builders {
        by_hour
            .entry(p.hour)
            .or_default()
            .push((p.hep_type, b.finish()));
    }
    let mut out = Vec::new();
    for (hour, tables) in by_hour {
        let small = tables.iter().all(|(_, b)| b.num_rows() <= bundle_max_rows);
        if tables.len() >= 2 && small {
            let bundle = BundleHour {
                types: TypeSet::of(tables.iter().map(|(t, _)| *t)),
                hour,
            };
            out.push(PendingFile {
                path: bundle.file(name),
                tables,
            });
            continue;
        }
        for (hep_type, batch) in tables {
            out.push(PendingFile {
                path: Partition { hep_type, hour }.file(name),
                tables: vec![(hep_type, batch)],
            });
        }
    }
    out
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
        self.append_seen(m, |_| {});
    }

    /// [`Self::append`], handing `seen` the SIP fields extracted for the row.
    pub fn append_seen(
        &mut self,
        m: &HepMessage,
        seen: impl FnOnce(Option<&hep::sip::SipFields<'_>>),
    ) {
        let p = Partition::for_micros(m.proto_type, m.time_micros());
        self.buffers
            .entry(p)
            .or_insert_with(|| Buffer {
                rows: BatchBuilder::with_aleg_headers(m.proto_type, self.cfg.aleg_headers.clone()),
                since: Instant::now(),
            })
            .rows
            .append_seen(m, seen);
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
                    path: p.file(&name),
                    tables: vec![(p.hep_type, b.rows.finish())],
                })
            })
            .collect()
    }
}
