//! Code generated from `proto/`. Generated types stay inside `api/`, `invoke/` and `control/`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod dapr {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.common.v1");
            }
        }
        pub mod internals {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.internals.v1");
            }
        }
    }
}

pub use dapr::proto::common::v1 as common;
pub use dapr::proto::internals::v1 as internals;
