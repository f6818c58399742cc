//! Where records go: Kinesis, or anything else implementing [`RecordSink`]
//! (the tests' and benchmark's in-process sinks).
use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::batcher::Record;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

#[async_trait]
pub trait RecordSink: Send + Sync + 'static {
    /// Puts one batch (≤ 500 records, ≤ 5 MiB). Ok(indices of the records
    /// that failed, e.g. throttled) or Err when the whole call failed.
    async fn put(&self, records: &[Record]) -> Result<Vec<usize>, SinkError>;
}

pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    /// A client from the environment's region and credentials, with an
    /// optional endpoint override (LocalStack).
    pub async fn client(
        region: Option<String>,
        endpoint: Option<String>,
    ) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&aws_setup::sdk_config(region, endpoint).await)
    }
}

#[async_trait]
impl RecordSink for KinesisSink {
    async fn put(&self, records: &[Record]) -> Result<Vec<usize>, SinkError> {
        let entries = records
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(r.data.clone()))
                    .partition_key(&r.partition_key)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SinkError(e.to_string()))?;
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| SinkError(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string()))?;
        if out.failed_record_count().unwrap_or(0) == 0 {
            return Ok(Vec::new());
        }
        Ok(out
            .records()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(i, _)| i)
            .collect())
    }
}
