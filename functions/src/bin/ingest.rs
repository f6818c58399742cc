use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    functions::init_tracing();
    let store = functions::lake_from_env()?;
    lambda_runtime::run(service_fn(|e: LambdaEvent<KinesisEvent>| {
        let store = store.clone();
        async move { Ok::<_, lambda_runtime::Error>(functions::ingest::handle(&store, &e.payload).await.0) }
    }))
    .await
}
