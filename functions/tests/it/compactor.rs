//! The compactor function's handler.
use std::sync::Arc;

use functions::compactor::{CompactorEvent, handle};
use futures::StreamExt;
use lake::compact::CompactionConfig;
use object_store::ObjectStore;

/// A schedule naming a sweep that does not exist fails the invocation with
/// an error type Lambda shows, and runs nothing.
#[tokio::test]
async fn an_unknown_sweep_is_reported_by_type() {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let event = CompactorEvent {
        sweep: Some("weekly".into()),
    };
    let e = handle(&store, &CompactionConfig::default(), &event, None)
        .await
        .unwrap_err();
    let d = lambda_runtime::Diagnostic::from(e);
    assert_eq!(d.error_type, "UnknownSweep");
    assert!(
        d.error_message.contains("\"weekly\""),
        "{}",
        d.error_message
    );
    assert!(store.list(None).next().await.is_none(), "nothing written");
}
