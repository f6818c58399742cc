// The allocator `hepop` uses (the compaction memory budget is measured with
// it), chosen by each binary rather than forced on the library's users.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant, SystemTime};

use functions::compactor::{CompactorEvent, handle};
use functions::settings::{CompactorSettings, from_env};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    functions::init_tracing();
    let settings: CompactorSettings = from_env()?;
    let store = settings.lake.open()?;
    let cfg = settings.config()?;
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
