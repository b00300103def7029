//! `ApiJson<T>`: a JSON body extractor whose every rejection is an [`ApiError`] naming the problem:
//! over the size limit → 413, not JSON → 400 with line and column, wrong shape → 422 with the field
//! path (`nodes[2].agent: missing field`).

use crate::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

/// A JSON request body of type `T`, limited to the configured body size.
pub struct ApiJson<T>(pub T);

/// The body size limit, installed as a request extension by the router.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub usize);

pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body is larger than the limit of {limit} bytes (server.max_body_bytes)"),
    )
}

/// Parses `bytes` as JSON into `T` with the API's error mapping.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "request body is empty; expected a JSON document",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "request body is not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::unprocessable(format!("request body does not match the schema: {inner}"))
        } else {
            ApiError::unprocessable(format!(
                "request body does not match the schema at {path}: {inner}"
            ))
        }
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(1 << 20);
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("Content-Type {ct:?} is not JSON; send Content-Type: application/json"),
                ));
            }
        }
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > limit as u64
        {
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                // A length-limit error is the only way reading a body of a live request fails with
                // a limit; anything else is the client going away mid-body.
                let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(s) = src {
                    if s.to_string().contains("length limit") {
                        return too_large(limit);
                    }
                    src = s.source();
                }
                ApiError::bad_request("body_read_failed", format!("reading request body: {e}"))
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Node {
        id: String,
        agent: String,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Wf {
        name: String,
        nodes: Vec<Node>,
    }

    #[test]
    fn syntax_errors_are_400_with_position() {
        let e = parse_json::<Wf>(b"{\"name\": ").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = parse_json::<Wf>(b"  ").unwrap_err();
        assert_eq!(e.code, "invalid_json");
    }

    #[test]
    fn shape_errors_are_422_naming_the_field() {
        let e = parse_json::<Wf>(br#"{"name":"w","nodes":[{"id":"a","agent":"x"},{"id":"b"}]}"#)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("nodes[1]"), "{}", e.message);
        assert!(e.message.contains("agent"), "{}", e.message);
        let e = parse_json::<Wf>(br#"{"name":3,"nodes":[]}"#).unwrap_err();
        assert!(e.message.contains("name"), "{}", e.message);
    }
}
