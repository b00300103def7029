//! A fake Dagger engine: an HTTP server on `127.0.0.1:0` that speaks the session API a Dagger
//! client uses (`POST /query` with `{"query": ...}` and `Authorization: Basic
//! base64("<token>:")`), checks the GraphQL it receives, and answers as the engine does,
//! GraphQL `errors` arrays included. No real engine can run on this machine (its CLI downloads
//! the engine image), so Dagger clients are tested against this.
//!
//! What it understands (anything else is answered with the engine's kind of error):
//! - `host { directory(path: "/abs") { id } }`: the path must exist; the id is opaque;
//! - `container { from(address:) { <ops> { withExec(args:, stdin:, expect:) { <leaves> } } } }`
//!   with ops `withDirectory(path:, source: <id>)`, `withWorkdir(path:)`,
//!   `withEnvVariable(name:, value:)`, and leaves `stdout`, `stderr`, `exitCode` and
//!   `directory(path:) { export(path:) }`.
//!
//! The exec itself is answered by a closure given the [`ExecCall`] (image, args, env, stdin,
//! workdir, mounted host directories). A non-zero exit without `expect: ANY` is a GraphQL error,
//! as on the engine. An export writes the mounted directory's files plus the reply's files.
//!
//! ```no_run
//! # async fn demo() {
//! use hybridgrid_testkit::fake_dagger::{FakeDagger, Reply};
//! let fake = FakeDagger::start(|call| Reply::exit(0, format!("ran {:?}", call.args), "")).await;
//! // DAGGER_SESSION_PORT = fake.port(), DAGGER_SESSION_TOKEN = fake.token()
//! # let _ = fake;
//! # }
//! ```

pub mod graphql;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use graphql::{Field, Value};
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What the fake was asked to run.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecCall {
    /// `from(address:)`.
    pub image: String,
    /// `withExec(args:)`.
    pub args: Vec<String>,
    /// `withEnvVariable` pairs, in order.
    pub env: Vec<(String, String)>,
    /// `withExec(stdin:)`.
    pub stdin: Option<String>,
    /// The last `withWorkdir(path:)`.
    pub workdir: Option<String>,
    /// `withDirectory` mounts: container path and the host directory behind the id.
    pub mounts: Vec<(String, PathBuf)>,
    /// Whether `expect: ANY` was given.
    pub expect_any: bool,
}

/// How the fake answers an exec.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The process ran and exited.
    Exit {
        /// `exitCode`.
        exit_code: i64,
        /// `stdout`.
        stdout: String,
        /// `stderr`.
        stderr: String,
        /// Files the process wrote, relative to the exported directory.
        files: Vec<(String, Vec<u8>)>,
    },
    /// The engine fails the pipeline (an image it cannot resolve, say): a GraphQL error with
    /// this message at the `withExec` path.
    Error(String),
    /// Never answers (up to two minutes): for client timeouts.
    Hang,
}

impl Reply {
    /// An exit with this code and output and no files.
    pub fn exit(exit_code: i64, stdout: impl Into<String>, stderr: impl Into<String>) -> Self {
        Reply::Exit {
            exit_code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            files: Vec::new(),
        }
    }
}

type Behaviour = dyn Fn(&ExecCall) -> Reply + Send + Sync;

struct Shared {
    token: String,
    behaviour: Box<Behaviour>,
    calls: Mutex<Vec<ExecCall>>,
    queries: Mutex<Vec<String>>,
    dirs: Mutex<HashMap<String, PathBuf>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running fake engine; stops when dropped.
pub struct FakeDagger {
    port: u16,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeDagger {
    /// Starts a fake engine on a free loopback port with a random session token; `behaviour`
    /// answers each exec.
    pub async fn start<F>(behaviour: F) -> FakeDagger
    where
        F: Fn(&ExecCall) -> Reply + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            token: uuid::Uuid::new_v4().simple().to_string(),
            behaviour: Box::new(behaviour),
            calls: Mutex::default(),
            queries: Mutex::default(),
            dirs: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Dagger engine on 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let app = axum::Router::new()
            .route("/query", axum::routing::post(query))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeDagger {
            port,
            shared,
            server,
        }
    }

    /// The session port (`DAGGER_SESSION_PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The session token (`DAGGER_SESSION_TOKEN`).
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The execs asked for so far.
    pub fn calls(&self) -> Vec<ExecCall> {
        lock(&self.shared.calls).clone()
    }

    /// The raw GraphQL queries received so far (authorised ones only).
    pub fn queries(&self) -> Vec<String> {
        lock(&self.shared.queries).clone()
    }
}

impl Drop for FakeDagger {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A GraphQL error answer, as the engine words them.
fn gql_error(status: StatusCode, message: impl Into<String>, path: &[&str]) -> Response {
    let mut error = json!({ "message": message.into() });
    if !path.is_empty() {
        error["path"] = json!(path);
    }
    (
        status,
        axum::Json(json!({ "errors": [error], "data": null })),
    )
        .into_response()
}

async fn query(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", shared.token))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let request: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return gql_error(
                StatusCode::BAD_REQUEST,
                format!("json body could not be decoded: {e}"),
                &[],
            );
        }
    };
    let Some(text) = request.get("query").and_then(Json::as_str) else {
        return gql_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no operation provided",
            &[],
        );
    };
    lock(&shared.queries).push(text.to_owned());
    let fields = match graphql::parse(text) {
        Ok(f) => f,
        Err(e) => return gql_error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string(), &[]),
    };
    let mut data = Map::new();
    for field in &fields {
        let value = match field.name.as_str() {
            "host" => host(&shared, field),
            "container" => container(&shared, field).await,
            other => Err(Failure::new(
                format!("Cannot query field \"{other}\" on type \"Query\"."),
                vec![other.to_owned()],
            )),
        };
        match value {
            Ok(v) => {
                data.insert(field.key().to_owned(), v);
            }
            Err(f) => {
                let path: Vec<&str> = f.path.iter().map(String::as_str).collect();
                return gql_error(StatusCode::OK, f.message, &path);
            }
        }
    }
    axum::Json(json!({ "data": data })).into_response()
}

/// An error at a path of the query.
struct Failure {
    message: String,
    path: Vec<String>,
}

impl Failure {
    fn new(message: impl Into<String>, path: Vec<String>) -> Self {
        Self {
            message: message.into(),
            path,
        }
    }
}

fn only_child<'a>(field: &'a Field, path: &[String]) -> Result<&'a Field, Failure> {
    match field.selection.as_slice() {
        [one] => Ok(one),
        _ => Err(Failure::new(
            format!("this fake expects exactly one field under {:?}", field.name),
            path.to_vec(),
        )),
    }
}

fn required<'a>(field: &'a Field, arg: &str, path: &[String]) -> Result<&'a str, Failure> {
    field.str_arg(arg).ok_or_else(|| {
        Failure::new(
            format!(
                "Field \"{}\" argument \"{arg}\" of type \"String!\" is required, but it was not provided.",
                field.name
            ),
            path.to_vec(),
        )
    })
}

fn host(shared: &Shared, field: &Field) -> Result<Json, Failure> {
    let mut path = vec![field.key().to_owned()];
    let dir = only_child(field, &path)?;
    path.push(dir.key().to_owned());
    if dir.name != "directory" {
        return Err(Failure::new(
            format!("Cannot query field \"{}\" on type \"Host\".", dir.name),
            path,
        ));
    }
    let host_path = required(dir, "path", &path)?;
    if !Path::new(host_path).is_dir() {
        return Err(Failure::new(
            format!("stat {host_path}: no such file or directory"),
            path,
        ));
    }
    let leaf = only_child(dir, &path)?;
    if leaf.name != "id" {
        return Err(Failure::new(
            format!(
                "this fake answers only `id` on a host directory, not {:?}",
                leaf.name
            ),
            path,
        ));
    }
    let id = format!(
        "fake-directory-{}",
        shared.next_id.fetch_add(1, Ordering::Relaxed)
    );
    lock(&shared.dirs).insert(id.clone(), PathBuf::from(host_path));
    Ok(json!({ dir.key(): { leaf.key(): id } }))
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::List(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Walks `container { from { ops... { withExec { leaves } } } }`.
async fn container(shared: &Shared, field: &Field) -> Result<Json, Failure> {
    let mut path = vec![field.key().to_owned()];
    let from = only_child(field, &path)?;
    path.push(from.key().to_owned());
    if from.name != "from" {
        return Err(Failure::new(
            format!(
                "this fake starts containers with `from`, not {:?}",
                from.name
            ),
            path,
        ));
    }
    let mut call = ExecCall {
        image: required(from, "address", &path)?.to_owned(),
        args: Vec::new(),
        env: Vec::new(),
        stdin: None,
        workdir: None,
        mounts: Vec::new(),
        expect_any: false,
    };
    // The chain of keys from `from` down to `withExec`, to shape the answer.
    let mut keys = vec![from.key().to_owned()];
    let mut at = from;
    let exec = loop {
        let next = only_child(at, &path)?;
        path.push(next.key().to_owned());
        keys.push(next.key().to_owned());
        match next.name.as_str() {
            "withDirectory" => {
                let target = required(next, "path", &path)?.to_owned();
                let id = required(next, "source", &path)?;
                let Some(host) = lock(&shared.dirs).get(id).cloned() else {
                    return Err(Failure::new(format!("invalid directory id {id:?}"), path));
                };
                call.mounts.push((target, host));
            }
            "withWorkdir" => call.workdir = Some(required(next, "path", &path)?.to_owned()),
            "withEnvVariable" => call.env.push((
                required(next, "name", &path)?.to_owned(),
                required(next, "value", &path)?.to_owned(),
            )),
            "withExec" => break next,
            other => {
                return Err(Failure::new(
                    format!("Cannot query field \"{other}\" on type \"Container\"."),
                    path,
                ));
            }
        }
        at = next;
    };
    call.args = strings(exec.arg("args")).ok_or_else(|| {
        Failure::new(
            "Field \"withExec\" argument \"args\" of type \"[String!]!\" is required",
            path.clone(),
        )
    })?;
    call.stdin = exec.str_arg("stdin").map(str::to_owned);
    call.expect_any = exec.arg("expect") == Some(&Value::Enum("ANY".into()));
    lock(&shared.calls).push(call.clone());
    let (exit_code, stdout, stderr, files) = match (shared.behaviour)(&call) {
        Reply::Exit {
            exit_code,
            stdout,
            stderr,
            files,
        } => (exit_code, stdout, stderr, files),
        Reply::Error(message) => return Err(Failure::new(message, path)),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return Err(Failure::new("context deadline exceeded", path));
        }
    };
    if exit_code != 0 && !call.expect_any {
        return Err(Failure::new(
            format!(
                "process \"{}\" did not complete successfully: exit code: {exit_code}",
                call.args.join(" ")
            ),
            path,
        ));
    }
    let mut leaves = Map::new();
    for leaf in &exec.selection {
        let value = match leaf.name.as_str() {
            "stdout" => json!(stdout),
            "stderr" => json!(stderr),
            "exitCode" => json!(exit_code),
            "directory" => export(&call, leaf, &files, &path)?,
            other => {
                return Err(Failure::new(
                    format!("Cannot query field \"{other}\" on type \"Container\"."),
                    path,
                ));
            }
        };
        leaves.insert(leaf.key().to_owned(), value);
    }
    // Nest the leaves back up the chain of keys.
    let mut value = Json::Object(leaves);
    for key in keys.iter().rev() {
        value = json!({ key: value });
    }
    Ok(value)
}

/// `directory(path:) { export(path:) }`: writes the mounted files and the reply's files there.
fn export(
    call: &ExecCall,
    leaf: &Field,
    files: &[(String, Vec<u8>)],
    path: &[String],
) -> Result<Json, Failure> {
    let dir = required(leaf, "path", path)?;
    let inner = only_child(leaf, path)?;
    if inner.name != "export" {
        return Err(Failure::new(
            format!(
                "this fake answers only `export` on a directory, not {:?}",
                inner.name
            ),
            path.to_vec(),
        ));
    }
    let target = PathBuf::from(required(inner, "path", path)?);
    let io = |e: std::io::Error| {
        Failure::new(
            format!("export to {}: {e}", target.display()),
            path.to_vec(),
        )
    };
    std::fs::create_dir_all(&target).map_err(io)?;
    for (mount, host) in &call.mounts {
        if mount == dir {
            copy_tree(host, &target).map_err(io)?;
        }
    }
    for (rel, contents) in files {
        let file = target.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&file, contents).map_err(io)?;
    }
    Ok(json!({ inner.key(): target.display().to_string() }))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
