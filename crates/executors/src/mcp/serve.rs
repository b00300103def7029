//! Our own tools (any [`ToolRouter`], e.g. the Hub's) served as an MCP server, over stdio or
//! streamable HTTP, so coding-agent CLIs can call them.

use super::error::McpError;
use crate::llm::{ToolError, ToolRouter};
use hybridgrid_core::CancellationToken;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer, ServiceExt};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use std::net::SocketAddr;
use std::sync::Arc;

/// Path of the MCP endpoint on the HTTP server.
pub const MCP_PATH: &str = "/mcp";

/// The MCP server side of a [`ToolRouter`].
#[derive(Clone)]
struct RouterServer {
    router: Arc<dyn ToolRouter>,
    name: String,
}

impl ServerHandler for RouterServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new(self.name.clone(), env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self
            .router
            .tools()
            .into_iter()
            .map(|d| {
                let schema = match d.input_schema {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::from_iter([(
                        "type".to_owned(),
                        serde_json::json!("object"),
                    )]),
                };
                Tool::new(d.name, d.description, Arc::new(schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = serde_json::Value::Object(request.arguments.unwrap_or_default());
        match self.router.call(&request.name, args).await {
            Ok(out) => {
                let content = vec![ContentBlock::text(out.content)];
                Ok(if out.is_error {
                    CallToolResult::error(content)
                } else {
                    CallToolResult::success(content)
                }
                .into())
            }
            Err(e @ ToolError::Unknown { .. }) => {
                Err(ErrorData::invalid_params(e.to_string(), None))
            }
            Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into()),
        }
    }
}

/// Serves `router`'s tools over this process's stdin/stdout until the client disconnects or
/// `cancel` fires. `name` is the server name announced in the handshake.
pub async fn serve_tools_stdio(
    router: Arc<dyn ToolRouter>,
    name: &str,
    cancel: CancellationToken,
) -> Result<(), McpError> {
    let server = RouterServer {
        router,
        name: name.to_owned(),
    };
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Serve {
            reason: format!("stdio handshake failed: {e}"),
        })?;
    let ct = running.cancellation_token();
    tokio::select! {
        r = running.waiting() => { r.map_err(|e| McpError::Serve { reason: e.to_string() })?; }
        () = cancel.cancelled() => ct.cancel(),
    }
    Ok(())
}

/// A running streamable-HTTP MCP server (see [`serve_tools_http`]). Dropping it does not stop
/// it: cancel the token given at start, or call [`McpHttpServer::shutdown`].
#[derive(Debug)]
pub struct McpHttpServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl McpHttpServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint clients use: `http://ADDR/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{MCP_PATH}", self.local_addr)
    }

    /// Stops serving and waits (up to 5 s) for the server task to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

/// Serves `router`'s tools as a streamable-HTTP MCP endpoint at `http://addr/mcp` (port 0 picks
/// a free one) until `cancel` fires. Only requests whose `Host` is loopback or the bound address
/// are accepted (DNS-rebinding protection).
pub async fn serve_tools_http(
    router: Arc<dyn ToolRouter>,
    name: &str,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> Result<McpHttpServer, McpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| McpError::Serve {
            reason: format!("cannot bind {addr}: {e}"),
        })?;
    let local_addr = listener.local_addr().map_err(|e| McpError::Serve {
        reason: e.to_string(),
    })?;
    let server = RouterServer {
        router,
        name: name.to_owned(),
    };
    let child = cancel.child_token();
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    hosts.push(local_addr.ip().to_string());
    hosts.push(local_addr.to_string());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_cancellation_token(child.clone());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service(MCP_PATH, service);
    let stop = child.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "mcp_http_server_failed");
        }
    });
    tracing::info!(addr = %local_addr, "mcp_http_server_started");
    Ok(McpHttpServer {
        local_addr,
        cancel: child,
        task,
    })
}
