//! Code generated from `proto/`. Generated types stay at the edges (`api/`, `invoke/`, `app_channel/`, `identity/`, `control/`).

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
        pub mod runtime {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.runtime.v1");
            }
        }
        pub mod sentry {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.sentry.v1");
            }
        }
    }
}

pub use dapr::proto::common::v1 as common;
pub use dapr::proto::internals::v1 as internals;
pub use dapr::proto::runtime::v1 as runtime;
pub use dapr::proto::sentry::v1 as sentry;

/// Every compiled proto file as a serialized `FileDescriptorSet`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("dapr_descriptor");
