//! Re-ingests what the ingest function gave up on. Lambda's on-failure
//! destination receives only a batch's coordinates (shard, first and last
//! sequence number), not its records; while the stream still holds them they
//! are read back (GetShardIterator AT_SEQUENCE_NUMBER) and handed to the same
//! ingest code. Objects are named by (shard, sequence), so a record stored
//! before its batch failed is rewritten with the same rows: once, still.
use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine;
use functions::ingest::{IngestConfig, IngestReport};
use object_store::ObjectStore;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ReingestError {
    #[error("not an on-failure record of a Kinesis event source: {0}")]
    NotAFailure(String),
    #[error(
        "records from {start} of {shard} are no longer in the stream (first kept: {first}): they are lost"
    )]
    Expired {
        shard: String,
        start: String,
        first: String,
    },
    #[error("Kinesis: {0}")]
    Kinesis(String),
    #[error("storing failed again for {0} record(s); the failure is kept for another try")]
    Failed(usize),
}

/// Where a failed batch lies in the stream: `KinesisBatchInfo` of Lambda's
/// on-failure record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedBatch {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub stream_arn: String,
    #[serde(default)]
    pub batch_size: Option<u32>,
}

impl FailedBatch {
    /// Reads Lambda's on-failure record (an SQS message body).
    pub fn parse(body: &str) -> Result<Self, ReingestError> {
        #[derive(Deserialize)]
        struct Record {
            #[serde(rename = "KinesisBatchInfo")]
            info: FailedBatch,
        }
        serde_json::from_str::<Record>(body)
            .map(|r| r.info)
            .map_err(|e| ReingestError::NotAFailure(e.to_string()))
    }

    /// The stream's name, from its ARN (`arn:aws:kinesis:<region>:<account>:stream/<name>`).
    pub fn stream_name(&self) -> &str {
        self.stream_arn
            .rsplit_once(":stream/")
            .map_or(self.stream_arn.as_str(), |(_, n)| n)
    }
}

/// Kinesis sequence numbers are decimal integers of up to 128 bits, as strings.
pub fn sequence_le(a: &str, b: &str) -> bool {
    lake::spans::Seq(a) <= lake::spans::Seq(b)
}

/// The records of `batch`, read back from the stream, as the event Lambda sent.
pub async fn read_batch(
    kinesis: &aws_sdk_kinesis::Client,
    batch: &FailedBatch,
) -> Result<KinesisEvent, ReingestError> {
    let err = |e: &dyn std::fmt::Display| ReingestError::Kinesis(e.to_string());
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(batch.stream_name())
        .shard_id(&batch.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&batch.start_sequence_number)
        .send()
        .await
        .map_err(|e| err(&aws_sdk_kinesis::error::DisplayErrorContext(e)))?
        .shard_iterator
        .ok_or_else(|| ReingestError::Kinesis("no shard iterator".into()))?;
    let mut records = Vec::new();
    'read: loop {
        let out = kinesis
            .get_records()
            .shard_iterator(&iterator)
            .limit(1000)
            .send()
            .await
            .map_err(|e| err(&aws_sdk_kinesis::error::DisplayErrorContext(e)))?;
        for r in out.records() {
            let seq = r.sequence_number();
            if records.is_empty() && seq != batch.start_sequence_number {
                // Trimmed: the shard now starts after the batch's first record.
                return Err(ReingestError::Expired {
                    shard: batch.shard_id.clone(),
                    start: batch.start_sequence_number.clone(),
                    first: seq.to_owned(),
                });
            }
            if !sequence_le(seq, &batch.end_sequence_number) {
                break 'read;
            }
            records.push(event_record(&batch.stream_arn, &batch.shard_id, r));
        }
        let caught_up = out.millis_behind_latest() == Some(0) && out.records().is_empty();
        match out.next_shard_iterator() {
            Some(next) if !caught_up => iterator = next.to_owned(),
            _ => break,
        }
    }
    if records.is_empty() {
        return Err(ReingestError::Expired {
            shard: batch.shard_id.clone(),
            start: batch.start_sequence_number.clone(),
            first: "none".into(),
        });
    }
    serde_json::from_value(json!({ "Records": records }))
        .map_err(|e| ReingestError::Kinesis(e.to_string()))
}

/// One record of shard `shard` as Lambda's Kinesis event carries it.
pub fn event_record(
    stream_arn: &str,
    shard: &str,
    r: &aws_sdk_kinesis::types::Record,
) -> serde_json::Value {
    let arrival = r
        .approximate_arrival_timestamp()
        .map(|t| t.as_secs_f64())
        .unwrap_or(0.0);
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r.partition_key(),
            "sequenceNumber": r.sequence_number(),
            "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard}:{}", r.sequence_number()),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "",
        "awsRegion": stream_arn.split(':').nth(3).unwrap_or_default(),
        "eventSourceARN": stream_arn,
    })
}

/// Reads the batch an on-failure record names and stores it with the ingest code.
pub async fn reingest(
    kinesis: &aws_sdk_kinesis::Client,
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
    body: &str,
) -> Result<IngestReport, ReingestError> {
    let batch = FailedBatch::parse(body)?;
    let event = read_batch(kinesis, &batch).await?;
    let (response, report) = functions::ingest::handle(store, cfg, &event).await;
    if !response.batch_item_failures.is_empty() {
        return Err(ReingestError::Failed(response.batch_item_failures.len()));
    }
    Ok(report)
}

#[derive(Debug, Default, serde::Serialize)]
pub struct QueueReport {
    /// On-failure records whose batch is now stored (and deleted from the queue).
    pub batches: usize,
    pub records: usize,
    pub messages: usize,
    /// On-failure records left in the queue: their error was logged.
    pub kept: usize,
}

/// Re-ingests every on-failure record in the SQS queue, deleting each once
/// its batch is stored. A failure stays in the queue (visible again after
/// its visibility timeout) and is counted in `kept`.
pub async fn drain_queue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    kinesis: &aws_sdk_kinesis::Client,
    store: &Arc<dyn ObjectStore>,
    cfg: &IngestConfig,
) -> anyhow::Result<QueueReport> {
    let mut report = QueueReport::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        let messages = out.messages();
        // Done when the queue is empty, or only shows messages already kept.
        if messages.is_empty()
            || messages
                .iter()
                .all(|m| seen.contains(m.message_id().unwrap_or_default()))
        {
            return Ok(report);
        }
        for m in messages {
            if !seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                continue;
            }
            match reingest(kinesis, store, cfg, m.body().unwrap_or_default()).await {
                Ok(r) => {
                    report.batches += 1;
                    report.records += r.records;
                    report.messages += r.messages;
                    if let Some(handle) = m.receipt_handle() {
                        sqs.delete_message()
                            .queue_url(queue_url)
                            .receipt_handle(handle)
                            .send()
                            .await
                            .map_err(|e| {
                                anyhow::anyhow!(
                                    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
                                )
                            })?;
                    }
                }
                Err(e) => {
                    tracing::error!(message = m.message_id().unwrap_or_default(), error = %e, "kept in the queue");
                    report.kept += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_integers() {
        assert!(sequence_le("9", "10"));
        assert!(!sequence_le("10", "9"));
        assert!(sequence_le("0042", "42"));
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert!(sequence_le(a, b) && !sequence_le(b, a) && sequence_le(a, a));
    }

    #[test]
    fn reads_lambdas_on_failure_record() {
        let body = r#"{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:us-east-1:1:function:ingest","condition":"RetryAttemptsExhausted","approximateInvokeCount":6},
            "responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},
            "version":"1.0","timestamp":"2026-11-29T10:00:00.000Z",
            "KinesisBatchInfo":{"shardId":"shardId-000000000001","startSequenceNumber":"4959","endSequenceNumber":"4961",
            "approximateArrivalOfFirstRecord":"2026-11-29T09:59:00Z","approximateArrivalOfLastRecord":"2026-11-29T09:59:01Z",
            "batchSize":3,"streamArn":"arn:aws:kinesis:us-east-1:123456789012:stream/hepop-hep"}}"#;
        let b = FailedBatch::parse(body).unwrap();
        assert_eq!(b.shard_id, "shardId-000000000001");
        assert_eq!(
            (
                b.start_sequence_number.as_str(),
                b.end_sequence_number.as_str()
            ),
            ("4959", "4961")
        );
        assert_eq!(b.stream_name(), "hepop-hep");
        assert_eq!(b.batch_size, Some(3));
        assert!(matches!(
            FailedBatch::parse(r#"{"Records":[]}"#),
            Err(ReingestError::NotAFailure(_))
        ));
    }
}
