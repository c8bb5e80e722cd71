//! `pubsub.in-memory` through the broker conformance suite. Instances share one bus, as the
//! components of one process would, so consumer groups are exercised across instances.

mod support;

use std::sync::Arc;

use outrigger::pubsub::memory::{MemoryBus, MemoryPubSub};

#[tokio::test]
async fn memory_broker_passes_conformance() {
    let bus = MemoryBus::new();
    support::pubsub_conformance::run(
        |group| {
            let bus = bus.clone();
            async move { Arc::new(MemoryPubSub::with_bus(bus, group)) }
        },
        "mem",
    )
    .await;
}
