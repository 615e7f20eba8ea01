//! `grpc.health.v1.Health`, which BuildKit polls every 5 s on the session
//! (two failed checks and the daemon drops the session).

use std::collections::HashMap;
use std::pin::Pin;

use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

/// A health service that always answers `SERVING`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HealthService;

impl HealthService {
    /// The service wrapped in its generated tonic server.
    pub fn server() -> HealthServer<HealthService> {
        HealthServer::new(HealthService)
    }
}

fn serving() -> HealthCheckResponse {
    HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(serving()))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Ok(Response::new(HealthListResponse {
            statuses: HashMap::from([(String::new(), serving())]),
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    /// Sends `SERVING` once and keeps the stream open (the status never
    /// changes), like grpc-go's health server.
    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use futures::StreamExt as _;
        let stream =
            futures::stream::once(async { Ok(serving()) }).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn check_is_serving() {
        let response = HealthService
            .check(Request::new(HealthCheckRequest::default()))
            .await
            .unwrap();
        assert_eq!(response.get_ref().status, ServingStatus::Serving as i32);
    }
}
