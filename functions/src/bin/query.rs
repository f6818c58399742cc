// The allocator `hepop` uses (the compaction memory budget is measured with
// it), chosen by each binary rather than forced on the library's users.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::init_tracing();
    let store = functions::lake_from_env()?;
    let tokens = functions::api_tokens_from_env()?;
    let router = functions::query_router(store, functions::query_limits(), &tokens)?;
    lambda_http::run(router).await
}
