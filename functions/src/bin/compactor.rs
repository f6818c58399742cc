// The allocator `hepop` uses (the compaction memory budget is measured with
// it), chosen by each binary rather than forced on the library's users.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant, SystemTime};

use functions::compactor::{CompactorEvent, config_from_env, handle};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    functions::init_tracing();
    let store = functions::lake_from_env()?;
    let cfg = config_from_env()?;
    lambda_runtime::run(service_fn(|e: LambdaEvent<CompactorEvent>| {
        let (store, cfg) = (store.clone(), cfg.clone());
        // The context's deadline is wall-clock milliseconds since the epoch.
        let left = Duration::from_millis(e.context.deadline).checked_sub(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let deadline = left.map(|l| Instant::now() + l);
        async move {
            handle(&store, &cfg, &e.payload, deadline)
                .await
                .map_err(lambda_runtime::Diagnostic::from)
        }
    }))
    .await
}
