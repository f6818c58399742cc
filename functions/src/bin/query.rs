#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    functions::init_tracing();
    let store = functions::lake_from_env()?;
    let limits = lake::engine::QueryLimits {
        // API Gateway gives up after 30 s: stop first, with a message.
        timeout: std::time::Duration::from_secs(25),
        ..Default::default()
    };
    let tokens = functions::api_tokens_from_env()?;
    lambda_http::run(functions::query_router(store, limits, &tokens)?).await
}
