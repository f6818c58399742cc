// The allocator `hepop` uses (the compaction memory budget is measured with
// it), chosen by each binary rather than forced on the library's users.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::init_tracing();
    let settings: functions::settings::QuerySettings = functions::settings::from_env()?;
    let store = settings.lake.open()?;
    let tokens = settings.tokens.tokens()?;
    let router = functions::query_router(store, functions::query_limits(), &tokens)?;
    lambda_http::run(router).await
}
