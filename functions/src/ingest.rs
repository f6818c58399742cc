//! Kinesis event → HEP messages → Parquet in the lake.
//!
//! Idempotent by construction: the rows of Kinesis record (shard, sequence
//! number) go to objects named `k-<shard>-<sequence>.parquet` in their
//! partitions. A retried batch, or one bisected on error, rewrites the same
//! objects with the same rows: never a duplicate. A record that can never
//! decode goes to `_quarantine/` and counts as processed, so it cannot block
//! its shard.
use std::sync::Arc;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use futures::StreamExt;
use hep::{HepMessage, TimeWindow};
use lake::paths::{FileName, Quarantined};
use lake::rows::{AlegHeaders, default_aleg_headers, parse_aleg_headers};
use object_store::ObjectStore;

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

impl IngestConfig {
    /// `HEPOP_MAX_CAPTURE_AGE_SECS`, `HEPOP_MAX_CAPTURE_AHEAD_SECS`, `HEPOP_ACCEPT_ANY_TIME`,
    /// `HEPOP_ALEG_HEADERS`, as `hepop serve` reads them.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = TimeWindow::default();
        let secs = |k: &str, default: i64| {
            crate::env_number(k, (default / 1_000_000) as u32).map(|s| s as i64 * 1_000_000)
        };
        let accept_any = match std::env::var("HEPOP_ACCEPT_ANY_TIME").as_deref() {
            Ok("true" | "1") => true,
            Ok("false" | "0" | "") | Err(_) => false,
            Ok(v) => anyhow::bail!("HEPOP_ACCEPT_ANY_TIME={v:?}: use true or false"),
        };
        let aleg_headers = match std::env::var("HEPOP_ALEG_HEADERS") {
            Ok(list) => parse_aleg_headers(&list)
                .map_err(|e| anyhow::anyhow!("HEPOP_ALEG_HEADERS={list:?}: {e}"))?,
            Err(_) => default_aleg_headers(),
        };
        Ok(Self {
            window: TimeWindow {
                max_age_micros: secs("HEPOP_MAX_CAPTURE_AGE_SECS", d.max_age_micros)?,
                max_ahead_micros: secs("HEPOP_MAX_CAPTURE_AHEAD_SECS", d.max_ahead_micros)?,
                accept_any,
            },
            aleg_headers,
        })
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    pub records: usize,
    pub messages: usize,
    pub invalid_messages: usize,
    /// Messages whose capture time was outside the window: stored at arrival time.
    pub time_replaced: usize,
    pub quarantined: usize,
    pub files: usize,
    pub failed: usize,
}

/// Records processed at once: S3 PUTs are latency-bound.
const CONCURRENCY: usize = 16;

fn shard_of(r: &KinesisEventRecord) -> String {
    // eventID is "<shardId>:<sequenceNumber>".
    r.event_id
        .as_deref()
        .and_then(|id| id.split(':').next())
        .unwrap_or("shard")
        .to_owned()
}

/// What happened to one record.
#[derive(Default)]
struct Outcome {
    messages: usize,
    invalid: usize,
    time_replaced: usize,
    quarantined: bool,
    files: usize,
}

/// Keeps an unusable record out of the way: its bytes and why, under `_quarantine/kinesis/<shard>/<seq>`.
async fn quarantine(
    store: &Arc<dyn ObjectStore>,
    shard: &str,
    seq: &str,
    data: &[u8],
    why: &str,
) -> Result<(), String> {
    tracing::warn!(%shard, %seq, reason = %why, "record quarantined");
    let put = |reason: bool, bytes: Vec<u8>| async move {
        let path = Quarantined::KinesisRecord {
            shard: shard.to_owned(),
            sequence: seq.to_owned(),
            reason,
        }
        .path();
        lake::parquet_io::put(store, &path, bytes.into())
            .await
            .map_err(|e| e.to_string())
    };
    put(true, format!("{why}\n").into_bytes()).await?;
    put(false, data.to_vec()).await
}

async fn process(
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    r: &KinesisEventRecord,
) -> Result<Outcome, String> {
    let seq = &r.kinesis.sequence_number;
    let shard = shard_of(r);
    let data: &[u8] = &r.kinesis.data.0;
    let mut out = Outcome::default();
    let packets = match kinesis_record::messages(data) {
        Ok(p) => p,
        Err(e) => {
            quarantine(store, &shard, seq, data, &e.to_string()).await?;
            out.quarantined = true;
            return Ok(out);
        }
    };
    // The record's arrival time stands in for a missing or unbelievable
    // capture time: deterministic, so a retried record rewrites the same rows.
    let arrival = r.kinesis.approximate_arrival_timestamp.0.timestamp_micros();
    let msgs: Vec<HepMessage> = packets
        .iter()
        .filter_map(|p| match hep::decode(p) {
            Ok(mut m) => {
                out.time_replaced += m.settle_time(arrival, &cfg.window) as usize;
                Some(m)
            }
            Err(_) => {
                out.invalid += 1;
                None
            }
        })
        .collect();
    if msgs.is_empty() && out.invalid > 0 {
        // Nothing usable at all: keep the evidence.
        quarantine(
            store,
            &shard,
            seq,
            data,
            &format!("none of {} HEP messages decodes", out.invalid),
        )
        .await?;
        out.quarantined = true;
        return Ok(out);
    }
    out.messages = msgs.len();
    for file in lake::writer::files_named(&msgs, &FileName::kinesis(&shard, seq), &cfg.aleg_headers)
    {
        file.write(store).await.map_err(|e| e.to_string())?;
        out.files += 1;
    }
    Ok(out)
}

pub async fn handle(
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    event: &KinesisEvent,
) -> (KinesisEventResponse, IngestReport) {
    let outcomes: Vec<(String, Result<Outcome, String>)> = futures::stream::iter(&event.records)
        .map(|r| async move {
            (
                r.kinesis.sequence_number.clone(),
                process(store, cfg, r).await,
            )
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut report = IngestReport {
        records: event.records.len(),
        ..Default::default()
    };
    let mut response = KinesisEventResponse::default();
    for (seq, o) in outcomes {
        match o {
            Ok(o) => {
                report.messages += o.messages;
                report.invalid_messages += o.invalid;
                report.time_replaced += o.time_replaced;
                report.quarantined += o.quarantined as usize;
                report.files += o.files;
            }
            Err(e) => {
                tracing::error!(%seq, error = %e, "record failed; reported for retry");
                report.failed += 1;
                let mut f = KinesisBatchItemFailure::default();
                f.item_identifier = Some(seq);
                response.batch_item_failures.push(f);
            }
        }
    }
    tracing::info!(?report, "ingested");
    (response, report)
}
