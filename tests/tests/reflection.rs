//! gRPC reflection on both daemons, so grpcurl works with a mesh client certificate: the
//! services are listed to an admin credential on the master and on an agent.

use std::sync::Arc;
use std::time::Duration;

use pmesh_master::credentials::Credentials;
use pmesh_proto::identity::{Identity, Role};
use pmesh_tests::Mesh;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn services(address: &str, identity: &Identity, tls: rustls::ClientConfig) -> Vec<String> {
    let dialled = pmesh_rt::net::dial(address, identity, Arc::new(tls), Duration::from_secs(5)).expect("channel");
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut responses = ServerReflectionClient::new(dialled.channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses.message().await.expect("reflection answer").expect("one message");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|service| service.name).collect(),
        other => panic!("unexpected reflection answer: {other:?}"),
    }
}

#[test]
fn both_daemons_list_their_services() -> anyhow::Result<()> {
    pmesh_proto::tls::install_default_provider();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let port = mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let admin = Credentials::load(&mesh.master_dir().join("admin.credentials"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let on_master = runtime.block_on(services(&mesh.master_address(), &Identity::master(), admin.client_config()?));
    for expected in ["pmesh.v1.Master", "grpc.health.v1.Health"] {
        assert!(on_master.iter().any(|name| name == expected), "{on_master:?}");
    }
    let agent = Identity::new(Role::Agent, "pc-1")?;
    let on_agent = runtime.block_on(services(&format!("127.0.0.1:{port}"), &agent, admin.client_config()?));
    for expected in ["pmesh.v1.Agent", "grpc.health.v1.Health"] {
        assert!(on_agent.iter().any(|name| name == expected), "{on_agent:?}");
    }
    Ok(())
}
