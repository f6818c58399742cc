use lambda_runtime::{LambdaEvent, service_fn};

/// Scheduled: compacts every closed hour of every table, then reports.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    functions::init_tracing();
    let store = functions::lake_from_env()?;
    let env_secs = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let cfg = lake::compact::CompactionConfig {
        target_file_bytes: env_secs("COMPACT_TARGET_BYTES", 128 << 20),
        grace: std::time::Duration::from_secs(env_secs("COMPACT_GRACE_SECS", 300)),
        close_after: std::time::Duration::from_secs(env_secs("COMPACT_CLOSE_AFTER_SECS", 600)),
    };
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let (store, cfg) = (store.clone(), cfg.clone());
        async move {
            let r = lake::compact::compact_closed(&store, &cfg, chrono::Utc::now().timestamp_micros()).await?;
            tracing::info!(?r, "compaction run");
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "partitions": r.partitions, "files_in": r.files_in, "files_out": r.files_out,
                "rows": r.rows, "bytes_in": r.bytes_in, "bytes_out": r.bytes_out, "deleted": r.deleted
            }))
        }
    }))
    .await
}
