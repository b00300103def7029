//! The Hub's own tools served as an MCP server (rmcp, streamable HTTP), checked with the official
//! `@modelcontextprotocol/inspector --cli` as the client, against the fake Hub: the tools are
//! listed with their schemas, a call really reaches the Hub, and a `hub:read` agent neither sees
//! nor can call the write tools. Runs inside a network namespace with loopback only.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_agents_defs::parse_definition;
use hybridgrid_agents_hub::{FakeHub, HubClient};
use hybridgrid_agents_protocol::MemoryAgentState;
use hybridgrid_agents_runner::{HubTools, PostGate};
use hybridgrid_core::CancellationToken;
use hybridgrid_executors::mcp::serve_tools_http;
use serde_json::{Value, json};
use std::sync::Arc;
use support::{in_netns, inspector};

fn gate(hub: &FakeHub, name: &str, grants: &str) -> PostGate {
    let yaml = format!(
        "name: {name}\ntype: native\nbrain: {{provider: anthropic, model: m}}\ncapabilities:\n  grants: [{grants}]\n"
    );
    let def = parse_definition("config.yaml", &yaml, Some(name)).unwrap();
    let client = HubClient::new(&hub.url(), Some(hub.api_key().to_owned())).unwrap();
    PostGate::new(client, Arc::new(MemoryAgentState::new()), Arc::new(def))
}

fn names(listed: &Value) -> Vec<String> {
    listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {listed}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn hub_tools_mcp_server_answers_the_official_inspector() {
    if !in_netns("hub_tools_mcp_server_answers_the_official_inspector") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt.block_on(FakeHub::start()).unwrap();
    let nid = hub.mention("scribe", "alice", "@scribe what is new?");
    let post = hub.notification(&nid).unwrap().post_id;
    let cancel = CancellationToken::new();
    let serve = |g: PostGate| {
        rt.block_on(serve_tools_http(
            Arc::new(HubTools::new(g, "act-1")),
            "hub",
            "127.0.0.1:0".parse().unwrap(),
            cancel.clone(),
        ))
        .unwrap()
    };
    let writer = serve(gate(&hub, "scribe", "hub:read, hub:write"));
    let url = writer.url();
    let home = tempfile::tempdir().unwrap();
    let http = ["--transport", "http"];

    let (ok, listed, out) = inspector(
        home.path(),
        &[&url, http[0], http[1], "--method", "tools/list"],
    );
    assert!(ok, "{out}");
    let mut tools = names(&listed);
    tools.sort();
    assert_eq!(
        tools,
        [
            "hub_post",
            "hub_read_notifications",
            "hub_reply",
            "hub_search"
        ],
        "{listed}"
    );
    let reply_tool = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hub_reply")
        .unwrap();
    assert_eq!(
        reply_tool["inputSchema"]["required"],
        json!(["post_id", "content"])
    );

    // A read tool returns what the Hub holds.
    let (ok, read, out) = inspector(
        home.path(),
        &[
            &url,
            http[0],
            http[1],
            "--method",
            "tools/call",
            "--tool-name",
            "hub_read_notifications",
        ],
    );
    assert!(ok, "{out}");
    let text = read["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains(&nid), "{read}");

    // A write tool reaches the Hub: one reply under the post, by the agent.
    let (ok, called, out) = inspector(
        home.path(),
        &[
            &url,
            http[0],
            http[1],
            "--method",
            "tools/call",
            "--tool-name",
            "hub_reply",
            "--tool-arg",
            &format!("post_id={post}"),
            "--tool-arg",
            "content=Hello from MCP",
        ],
    );
    assert!(ok, "{out}");
    assert_ne!(called["isError"], json!(true), "{called}");
    let replies = hub.replies_to(&post);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].content, "Hello from MCP");
    assert_eq!(replies[0].author, "scribe");

    // hub:read only: the write tools are neither listed nor callable.
    let reader = serve(gate(&hub, "reader", "hub:read"));
    let rurl = reader.url();
    let (ok, listed, out) = inspector(
        home.path(),
        &[&rurl, http[0], http[1], "--method", "tools/list"],
    );
    assert!(ok, "{out}");
    let mut tools = names(&listed);
    tools.sort();
    assert_eq!(tools, ["hub_read_notifications", "hub_search"], "{listed}");
    let (ok, refused, out) = inspector(
        home.path(),
        &[
            &rurl,
            http[0],
            http[1],
            "--method",
            "tools/call",
            "--tool-name",
            "hub_reply",
            "--tool-arg",
            &format!("post_id={post}"),
            "--tool-arg",
            "content=sneaky",
        ],
    );
    // The official client will not even send it: the server does not offer the tool. (Our server
    // also refuses a direct call of a hidden tool: flow::read_grant_hides_and_refuses_write_tools.)
    assert!(
        (!ok || refused["isError"] == json!(true))
            && out.contains("hub_reply")
            && (out.contains("not found") || out.contains("hub:write")),
        "the call must be refused: {out}"
    );
    assert_eq!(hub.replies_to(&post).len(), 1, "nothing more was posted");
    rt.block_on(writer.shutdown());
    rt.block_on(reader.shutdown());
}
