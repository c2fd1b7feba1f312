//! The client port's router: the public `raftlog.v1` services, the standard health service,
//! and server reflection (v1 and v1alpha) listing exactly what this port serves. The internal
//! Raft transport is served on the peer port only.

use std::sync::Arc;

use raftlog_proto::v1::admin_server::AdminServer;
use raftlog_proto::v1::fetch_server::FetchServer;
use raftlog_proto::v1::groups_server::GroupsServer;
use raftlog_proto::v1::produce_server::ProduceServer;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::limits::HTTP2_FRAME_BYTES_MAX;
use tonic::transport::server::Router;

use crate::api::admin::AdminService;
use crate::api::consumer_groups::GroupsService;
use crate::api::fetch::FetchService;
use crate::api::produce::ProduceService;
use crate::context::NodeContext;
use crate::error::NodeError;

/// The client API's router over `context`.
pub(super) async fn router(context: &Arc<NodeContext>) -> Result<Router, NodeError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    health_reporter
        .set_serving::<ProduceServer<ProduceService>>()
        .await;
    health_reporter
        .set_serving::<FetchServer<FetchService>>()
        .await;
    health_reporter
        .set_serving::<GroupsServer<GroupsService>>()
        .await;
    // Reflection lists exactly what the client port serves: the public raftlog.v1 services,
    // health, and reflection itself, in v1 and in v1alpha (what Python's grpcio-reflection,
    // older grpcurl and Postman speak).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(raftlog_proto::V1_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_error = |e| NodeError::Controller(format!("reflection service: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    Ok(tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_frame_size(HTTP2_FRAME_BYTES_MAX)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AdminServer::new(AdminService::new(Arc::clone(context)))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            ProduceServer::new(ProduceService::new(Arc::clone(context)))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(GroupsServer::new(GroupsService::new(Arc::clone(context))))
        .add_service(
            FetchServer::new(FetchService::new(Arc::clone(context)))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        ))
}
