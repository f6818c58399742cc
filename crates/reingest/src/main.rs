use std::io::Read;

use clap::Parser;
use functions::ingest::IngestConfig;
use lake::settings::CaptureSettings;

/// Stores again the Kinesis records the ingest function gave up on, while the
/// stream still holds them: from the on-failure SQS queue (each message is
/// deleted once its batch is stored), or from on-failure records in files.
#[derive(Parser, Debug)]
#[command(name = "hepop-reingest", version)]
struct Args {
    /// The lake, as the ingest function has it: s3://bucket/prefix.
    #[arg(long, env = "HEPOP_LAKE")]
    lake: String,
    /// The on-failure queue (the stack's IngestFailureQueueUrl output).
    #[arg(long, env = "HEPOP_FAILURE_QUEUE_URL", conflicts_with = "files")]
    queue_url: Option<String>,
    /// On-failure records (SQS message bodies), one JSON document per file; - reads stdin.
    #[arg(required_unless_present = "queue_url")]
    files: Vec<String>,
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// Endpoint override for Kinesis and SQS (LocalStack).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
    /// The capture-time rule and A-leg headers: set them as the ingest function has them.
    #[command(flatten)]
    capture: CaptureSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    listen::init_logs_filtered(lake::LOG_FILTER);
    let a = Args::parse();
    let store = lake::store::open(&a.lake)?;
    // The same capture-time rule as the ingest function, from the same variables.
    let cfg = IngestConfig {
        window: a.capture.window(),
        aleg_headers: a.capture.aleg_headers()?,
    };
    let aws = aws_setup::sdk_config(a.region, a.endpoint).await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    if let Some(url) = a.queue_url {
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let r = reingest::drain_queue(&sqs, &url, &kinesis, &store, &cfg).await?;
        println!("{}", serde_json::to_string(&r)?);
        anyhow::ensure!(
            r.kept == 0,
            "{} on-failure record(s) kept in the queue",
            r.kept
        );
        return Ok(());
    }
    let mut failed = 0;
    for f in &a.files {
        let body = if f == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("reading {f}: {e}"))?
        };
        match reingest::reingest(&kinesis, &store, &cfg, &body).await {
            Ok(r) => println!("{f}: {}", serde_json::to_string(&r)?),
            Err(e) => {
                eprintln!("{f}: {e}");
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} on-failure record(s) not re-ingested");
    Ok(())
}
