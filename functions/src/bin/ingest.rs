// The allocator `hepop` uses (the compaction memory budget is measured with
// it), chosen by each binary rather than forced on the library's users.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use functions::ingest::Metered;
use functions::settings::{IngestSettings, from_env};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    functions::init_tracing();
    let settings: IngestSettings = from_env()?;
    let store = settings.lake.open()?;
    let cfg = settings.config()?;
    // One invocation at a time per instance: the lock is never contended.
    let metered = Arc::new(tokio::sync::Mutex::new(Metered::default()));
    lambda_runtime::run(service_fn(|e: LambdaEvent<KinesisEvent>| {
        let (store, cfg, metered) = (store.clone(), cfg.clone(), metered.clone());
        async move {
            let mut metered = metered.lock().await;
            let (response, _) = functions::ingest::handle_metered(
                &store,
                &cfg,
                &e.payload,
                &mut metered,
                &mut std::io::stdout(),
            )
            .await;
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
