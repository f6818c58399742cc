use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    functions::init_tracing();
    let store = functions::lake_from_env()?;
    let cfg = functions::ingest::IngestConfig::from_env()?;
    lambda_runtime::run(service_fn(|e: LambdaEvent<KinesisEvent>| {
        let (store, cfg) = (store.clone(), cfg.clone());
        async move {
            Ok::<_, lambda_runtime::Error>(
                functions::ingest::handle(&store, &cfg, &e.payload).await.0,
            )
        }
    }))
    .await
}
