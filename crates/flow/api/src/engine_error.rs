//! [`FlowError`] → [`ApiError`]: the engine's errors keep their message and get their status.

use crate::error::ApiError;
use axum::http::StatusCode;
use hybridgrid_flow_engine::FlowError;

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match &e {
            FlowError::NotFound { .. } => "not_found",
            FlowError::Invalid { .. } => "validation_failed",
            FlowError::Unprocessable { .. } => "schema_mismatch",
            FlowError::Conflict { .. } => "conflict",
            FlowError::Backend(_) if status == StatusCode::SERVICE_UNAVAILABLE => {
                "store_unavailable"
            }
            FlowError::Backend(_) => "store_failed",
        };
        ApiError::new(status, code, e.to_string())
    }
}
