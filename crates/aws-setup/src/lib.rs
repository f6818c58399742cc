//! The AWS SDK configuration HEPop's binaries share (the relay, the
//! re-ingest tool): one place that picks the TLS stack and the overrides.

/// AWS settings from the environment (credentials, region unless given), an
/// optional endpoint override (LocalStack), on a ring-based rustls stack.
pub async fn sdk_config(region: Option<String>, endpoint: Option<String>) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r));
    }
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}
