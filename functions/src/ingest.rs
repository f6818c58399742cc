//! Kinesis event → HEP messages → Parquet in the lake.
//!
//! One file per batch and partition: the rows of an attempt over records
//! `first..=last` of a shard go to `kb-<shard>-<first>-<last>-<started>.parquet`
//! in their partitions. A retried batch, whole, bisected or from a checkpoint
//! in the middle, writes files that supersede this attempt's, so readers
//! never see a row twice ([`lake::spans`]). A record that can never decode
//! goes to `_quarantine/` and counts as processed, so it cannot block its
//! shard.
use std::sync::Arc;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use futures::StreamExt;
use hep::{HepMessage, TimeWindow};
use hep_metrics::CaptureMetrics;
use hep_metrics::emf::Emf;
use lake::paths::FileName;
use lake::rows::{AlegHeaders, default_aleg_headers};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

/// How the ingest function treats what it receives.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Capture times outside it are stored at the record's arrival time (the same rule as `hepop serve`).
    pub window: TimeWindow,
    /// Where SIP extraction finds the A leg's Call-ID.
    pub aleg_headers: AlegHeaders,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            window: TimeWindow::default(),
            aleg_headers: default_aleg_headers(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// Records in the event.
    pub records: usize,
    pub messages: usize,
    pub invalid_messages: usize,
    /// Messages whose capture time was outside the window: stored at arrival time.
    pub time_replaced: usize,
    pub quarantined: usize,
    pub files: usize,
    /// Records reported for retry.
    pub failed: usize,
}

impl IngestReport {
    /// Adds what one shard's attempt did (everything but `records`, counted once).
    fn add(&mut self, o: &IngestReport) {
        self.messages += o.messages;
        self.invalid_messages += o.invalid_messages;
        self.time_replaced += o.time_replaced;
        self.quarantined += o.quarantined;
        self.files += o.files;
        self.failed += o.failed;
    }
}

/// Files (one per partition) written at once: S3 PUTs are latency-bound.
const CONCURRENCY: usize = 16;

fn shard_of(r: &KinesisEventRecord) -> String {
    // eventID is "<shardId>:<sequenceNumber>".
    r.event_id
        .as_deref()
        .and_then(|id| id.split(':').next())
        .unwrap_or("shard")
        .to_owned()
}

/// Why a record can never be stored: it goes to quarantine.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error(transparent)]
    Record(#[from] kinesis_record::RecordError),
    #[error("none of {0} HEP messages decodes")]
    NoMessage(usize),
}

/// Why a shard's attempt failed: its batch is reported for retry.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("quarantining record {sequence}: {source}")]
    Quarantine {
        sequence: String,
        source: lake::LakeError,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: Path,
        source: Arc<lake::LakeError>,
    },
}

/// One record's messages, or why none could be taken from it.
fn decode_record(
    r: &KinesisEventRecord,
    cfg: &IngestConfig,
    report: &mut IngestReport,
) -> Result<Vec<HepMessage>, Unreadable> {
    let packets = kinesis_record::messages(&r.kinesis.data.0)?;
    // The record's arrival time stands in for a missing or unbelievable
    // capture time: deterministic, so a retried record gives the same rows.
    let arrival = r.kinesis.approximate_arrival_timestamp.0.timestamp_micros();
    let mut invalid = 0;
    let msgs: Vec<HepMessage> = packets
        .iter()
        .filter_map(|p| match hep::decode(p) {
            Ok(mut m) => {
                report.time_replaced += m.settle_time(arrival, &cfg.window) as usize;
                Some(m)
            }
            Err(_) => {
                invalid += 1;
                None
            }
        })
        .collect();
    report.invalid_messages += invalid;
    if msgs.is_empty() && invalid > 0 {
        return Err(Unreadable::NoMessage(invalid));
    }
    Ok(msgs)
}

/// One attempt over one shard's records (a batch holds one shard's): one
/// file per partition, named by the records' span and the attempt's start.
/// All or nothing: on any failure the whole span is retried, and the retry's
/// files supersede whatever this attempt wrote ([`lake::spans`]).
async fn ingest_shard(
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    shard: &str,
    records: &[&KinesisEventRecord],
    started_micros: i64,
    report: &mut IngestReport,
    capture: Option<&mut CaptureMetrics>,
) -> Result<(), AttemptError> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(());
    };
    let mut msgs = Vec::new();
    for r in records {
        match decode_record(r, cfg, report) {
            Ok(m) => msgs.extend(m),
            Err(why) => {
                let seq = &r.kinesis.sequence_number;
                tracing::warn!(%shard, %seq, reason = %why, "record quarantined");
                let why = why.to_string();
                lake::quarantine::keep_record(store, shard, seq, &r.kinesis.data.0, &why)
                    .await
                    .map_err(|source| AttemptError::Quarantine {
                        sequence: seq.clone(),
                        source,
                    })?;
                report.quarantined += 1;
            }
        }
    }
    report.messages += msgs.len();
    let name = FileName::kinesis_batch(
        shard,
        &first.kinesis.sequence_number,
        &last.kinesis.sequence_number,
        started_micros,
    );
    let files = lake::writer::files_named(&msgs, &name, &cfg.aleg_headers);
    // By index: a closure taking `&PendingFile` would make this future not Send.
    let files = &files;
    let written: Vec<(&Path, Result<(), Arc<lake::LakeError>>)> =
        futures::stream::iter(0..files.len())
            .map(|i| async move {
                let f = &files[i];
                (&f.path, f.write(store).await.map_err(Arc::new))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    let failed = written
        .iter()
        .find_map(|(path, r)| r.clone().err().map(|e| ((*path).clone(), e)));
    if let Some((path, source)) = failed {
        // The retry supersedes these files anyway; removing them (best effort)
        // keeps a batch the mapping gives up on from leaving some rows behind.
        for (path, _) in written.iter().filter(|(_, r)| r.is_ok()) {
            let _ = store.delete(path).await;
        }
        return Err(AttemptError::Write { path, source });
    }
    report.files += files.len();
    // Counted once stored: a batch that fails is counted when its retry lands.
    if let Some(capture) = capture {
        msgs.iter().for_each(|m| capture.observe(m));
    }
    Ok(())
}

/// Ingests a Kinesis event as an attempt starting now.
pub async fn handle(
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    event: &KinesisEvent,
) -> (KinesisEventResponse, IngestReport) {
    let now = chrono::Utc::now().timestamp_micros();
    handle_attempt(store, cfg, event, now).await
}

/// [`handle`], counting what it stores into heplify-server's series, and
/// writing what they grew by as CloudWatch embedded metrics to `out` (the
/// function's log: CloudWatch makes metrics of it with no API call).
pub async fn handle_metered(
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    event: &KinesisEvent,
    metered: &mut Metered,
    out: &mut impl std::io::Write,
) -> (KinesisEventResponse, IngestReport) {
    let now = chrono::Utc::now().timestamp_micros();
    let result = attempt(store, cfg, event, now, Some(&mut metered.capture)).await;
    for line in metered.emf.report(&metered.capture, now / 1000) {
        // A log line lost is a metric lost, never a batch retried.
        let _ = writeln!(out, "{line}");
    }
    result
}

/// The ingest function's SIP, RTCP and packet series across invocations of
/// one instance (each instance reports what it counted).
#[derive(Debug)]
pub struct Metered {
    capture: CaptureMetrics,
    emf: Emf,
}

impl Default for Metered {
    fn default() -> Self {
        Self {
            capture: CaptureMetrics::default(),
            emf: Emf::new(METRICS_NAMESPACE),
        }
    }
}

/// The CloudWatch namespace of the ingest function's capture metrics.
pub const METRICS_NAMESPACE: &str = "HEPop";

/// Ingests a Kinesis event; `started_micros` names this attempt: attempts of
/// a shard must start in this clock's order (each after the previous ended).
pub async fn handle_attempt(
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    event: &KinesisEvent,
    started_micros: i64,
) -> (KinesisEventResponse, IngestReport) {
    attempt(store, cfg, event, started_micros, None).await
}

async fn attempt(
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    event: &KinesisEvent,
    started_micros: i64,
    mut capture: Option<&mut CaptureMetrics>,
) -> (KinesisEventResponse, IngestReport) {
    let mut report = IngestReport {
        records: event.records.len(),
        ..Default::default()
    };
    let mut response = KinesisEventResponse::default();
    // The event source mapping sends one shard per batch; group anyway, in order.
    let mut shards: Vec<(String, Vec<&KinesisEventRecord>)> = Vec::new();
    for r in &event.records {
        let shard = shard_of(r);
        match shards.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, rs)) => rs.push(r),
            None => shards.push((shard, vec![r])),
        }
    }
    for (shard, records) in shards {
        let mut attempt = IngestReport::default();
        let outcome = ingest_shard(
            store,
            cfg,
            &shard,
            &records,
            started_micros,
            &mut attempt,
            capture.as_deref_mut(),
        )
        .await;
        match outcome {
            Ok(()) => report.add(&attempt),
            Err(e) => {
                // The first record failed: the mapping retries the shard's batch from it.
                let seq = records[0].kinesis.sequence_number.clone();
                tracing::error!(%shard, %seq, error = %e, "batch failed; reported for retry");
                report.failed += records.len();
                let mut f = KinesisBatchItemFailure::default();
                f.item_identifier = Some(seq);
                response.batch_item_failures.push(f);
            }
        }
    }
    tracing::info!(?report, "ingested");
    (response, report)
}
