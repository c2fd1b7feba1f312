//! raftlog's wire types: the public `raftlog.v1` API and the internal Raft transport, generated
//! from `proto/`, plus the conversions between generated and domain types (`pb_impl`).
//! Nothing outside the API edge should touch the generated types.

#![allow(missing_docs)]

/// The public client API.
pub mod v1 {
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]
    tonic::include_proto!("raftlog.v1");
}

/// Node-to-node Raft transport.
pub mod internal {
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]
    tonic::include_proto!("raftlog.internal");
}

pub mod pb_impl;

pub use pb_impl::RetryClass;

/// Encoded `FileDescriptorSet` of the public `raftlog.v1` package only (what the client port
/// serves), for gRPC server reflection.
pub const V1_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("raftlog_v1_descriptor");
