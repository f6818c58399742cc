//! Opens the lake's object store from one location string, so every binary
//! accepts the same thing: a directory path, `file:///dir`, or `s3://bucket/prefix`.
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, RetryConfig};

use crate::durable_local::DurableLocal;
use crate::{LakeError, Result};

/// An S3 request is retried for at most this long (object_store's default is
/// 180 s): with the 30 s request timeout it ends well inside the ingest
/// function's 120 s, so the function reports the failure and Lambda retries the
/// record, instead of the whole invocation timing out.
pub const S3_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How an `s3://` lake is reached.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// An endpoint other than AWS's (LocalStack).
    pub endpoint: Option<String>,
    pub retry_timeout: std::time::Duration,
}

impl S3Settings {
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, and [`S3_RETRY_TIMEOUT`].
    pub fn from_env() -> Self {
        Self {
            endpoint: std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok(),
            retry_timeout: S3_RETRY_TIMEOUT,
        }
    }
}

pub fn open(location: &str) -> Result<Arc<dyn ObjectStore>> {
    open_with(location, &S3Settings::from_env())
}

pub fn open_with(location: &str, s3: &S3Settings) -> Result<Arc<dyn ObjectStore>> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // Region and credentials come from the environment.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                retry_timeout: s3.retry_timeout,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &s3.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() {
            s3
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        });
    }
    let dir = location.strip_prefix("file://").unwrap_or(location);
    std::fs::create_dir_all(dir).map_err(|e| LakeError::Other(format!("creating {dir}: {e}")))?;
    // Files are fsynced before they become visible (see `durable_local`).
    Ok(Arc::new(DurableLocal::new(std::path::Path::new(dir))?))
}

/// Writes and deletes a small object: an unwritable lake is found at start,
/// with the store's own error, rather than at the first flush.
pub async fn check_writable(store: &Arc<dyn ObjectStore>) -> Result<()> {
    let probe = crate::paths::write_probe();
    store.put(&probe, "hepop".into()).await?;
    store.delete(&probe).await?;
    Ok(())
}
