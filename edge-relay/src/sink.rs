//! Where records go: Kinesis, or anything else implementing [`RecordSink`]
//! (the tests' and benchmark's in-process sinks).
use async_trait::async_trait;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::batcher::Record;

/// Why a call failed, as the shipper must act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: throttling, a network failure, a timeout, a 5xx.
    #[error("{0}")]
    Retriable(String),
    /// No retry succeeds until someone changes something: the stream is
    /// missing, access is denied, the credentials are refused.
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkError::Permanent(_))
    }
}

#[async_trait]
pub trait RecordSink: Send + Sync + 'static {
    /// Puts one batch (≤ 500 records, ≤ 5 MiB). Ok(indices of the records
    /// that failed, e.g. throttled) or Err when the whole call failed.
    async fn put(&self, records: &[Record]) -> Result<Vec<usize>, SinkError>;

    /// Whether records can be put at all (the stream exists and may be
    /// written): asked once at start.
    async fn check(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Error codes no retry gets past: a missing stream, refused access or
/// credentials, a KMS key that cannot be used, a request Kinesis rejects.
const PERMANENT_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "KMSInvalidStateException",
    "InvalidArgumentException",
    "ValidationException",
];

/// Whether an AWS error code means retrying cannot help.
pub fn is_permanent_code(code: &str) -> bool {
    PERMANENT_CODES.contains(&code)
}

/// An SDK error as retriable or permanent. A request that cannot be built
/// (no region) is permanent; a timeout, an unreachable endpoint or an
/// unreadable response is retriable; a service error by its code.
pub fn classify<E, R>(e: SdkError<E, R>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let permanent = match &e {
        SdkError::ServiceError(s) => s.err().code().is_some_and(is_permanent_code),
        SdkError::ConstructionFailure(_) => true,
        _ => false,
    };
    let text = DisplayErrorContext(e).to_string();
    if permanent {
        SinkError::Permanent(text)
    } else {
        SinkError::Retriable(text)
    }
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
    /// optional endpoint override (LocalStack). The SDK does not retry: the
    /// shipper does, with the whole batch's deadline and the spool in view.
    pub async fn client(
        region: Option<String>,
        endpoint: Option<String>,
    ) -> aws_sdk_kinesis::Client {
        let sdk = aws_setup::sdk_config(region, endpoint).await;
        let conf = aws_sdk_kinesis::config::Builder::from(&sdk)
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_kinesis::Client::from_conf(conf)
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
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(classify)?;
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

    async fn check(&self) -> Result<(), SinkError> {
        self.client
            .describe_stream_summary()
            .stream_name(&self.stream)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_stream_or_refused_access_is_permanent_throttling_is_not() {
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "UnrecognizedClientException",
        ] {
            assert!(is_permanent_code(code), "{code}");
        }
        for code in [
            "ProvisionedThroughputExceededException",
            "KMSThrottlingException",
            "InternalFailure",
            "ServiceUnavailable",
            "ExpiredTokenException",
        ] {
            assert!(!is_permanent_code(code), "{code}");
        }
    }
}
