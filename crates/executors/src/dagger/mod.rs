//! [`DaggerExecutor`]: a task as a Dagger pipeline, over the engine's GraphQL session API.

mod config;

pub use config::{DaggerConfig, DaggerError};

use crate::paths::{WorkDir, is_safe_id, relative, work_dir_name};
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use hybridgrid_core::{CancellationToken, ExecError, Executor, TaskId, TaskOutput, TaskSpec};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most bytes of an engine answer read beyond the output limits (JSON framing and escapes).
const RESPONSE_SLACK: usize = 1 << 20;

/// Runs a [`TaskSpec`] as a Dagger pipeline, by posting GraphQL to the engine session
/// (`http://<host>:<port>/query`, Basic auth with the session token):
///
/// 1. the input files are written to a private host directory and loaded with
///    `host { directory(path:) { id } }`;
/// 2. `container { from(address: <image>) { withDirectory(path: <container_root>/hg-<id>,
///    source: <id>) { withWorkdir(path:) { withEnvVariable(name:, value:) ... { withExec(args:
///    <command>, stdin:, expect: ANY) { stdout stderr exitCode directory(path:) { export(path:) }
///    } } } } } }`, the export (only when outputs are requested) writing the work directory back
///    to a second private host directory, from which the requested outputs are read (symlinks
///    refused, total bounded by `limits.max_file_bytes`).
///
/// `expect: ANY` makes a non-zero exit a result with its code, as on every executor. GraphQL
/// strings carry stdin, stdout and stderr, so stdin must be UTF-8 (else
/// [`ExecError::InvalidSpec`]) and non-UTF-8 output arrives as the engine renders it. Past
/// `spec.timeout` (or on cancellation) the request is dropped, which ends the engine's query, and
/// the task fails with [`ExecError::DeadlineExceeded`] (or [`ExecError::Cancelled`]). Engine
/// failures are [`DaggerError`]s inside [`ExecError::Backend`]. The host directories are always
/// removed.
///
/// Tested against `hybridgrid_testkit::fake_dagger`, a local server that checks these queries and
/// answers as the engine does; no real engine can run on the development machines.
#[derive(Clone)]
pub struct DaggerExecutor {
    http: reqwest::Client,
    url: String,
    auth: String,
    config: DaggerConfig,
}

impl fmt::Debug for DaggerExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaggerExecutor")
            .field("url", &self.url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DaggerExecutor {
    /// An executor for the session in `config` (nothing is sent until the first task).
    pub fn new(config: DaggerConfig) -> Result<Self, ExecError> {
        let bad = |reason: String| ExecError::from(DaggerError::InvalidConfig { reason });
        if config.port == 0 {
            return Err(bad(
                "port is unset (DAGGER_SESSION_PORT of a running `dagger run` session)".to_owned(),
            ));
        }
        if config.token.is_empty() {
            return Err(bad("token is empty (DAGGER_SESSION_TOKEN)".to_owned()));
        }
        if !config.container_root.starts_with('/') {
            return Err(bad(format!(
                "container_root {:?} is not an absolute path",
                config.container_root
            )));
        }
        // reqwest is built without a default crypto provider (one TLS provider in the workspace,
        // ring); installing fails harmlessly when one is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DaggerError::Transport(Box::new(e)))?;
        let url = format!("http://{}:{}/query", config.host, config.port);
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", config.token))
        );
        Ok(Self {
            http,
            url,
            auth,
            config,
        })
    }

    /// Posts one query and returns its `data`, or the engine's errors.
    async fn query(&self, query: String, limit: usize) -> Result<Value, ExecError> {
        let mut header = reqwest::header::HeaderValue::from_str(&self.auth)
            .map_err(|e| DaggerError::Transport(Box::new(e)))?;
        header.set_sensitive(true);
        let mut response = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, header)
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(DaggerError::Unauthorized {
                url: self.url.clone(),
            }
            .into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(DaggerError::BadResponse {
                    reason: format!("answer larger than {limit} bytes"),
                }
                .into());
            }
            body.extend_from_slice(&chunk);
        }
        let parsed: Value =
            serde_json::from_slice(&body).map_err(|e| DaggerError::BadResponse {
                reason: format!(
                    "HTTP {status}, body not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            })?;
        if let Some(errors) = parsed.get("errors").and_then(Value::as_array)
            && !errors.is_empty()
        {
            let message = errors
                .iter()
                .map(|e| {
                    e.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("(no message)")
                })
                .collect::<Vec<_>>()
                .join("; ");
            let path = errors[0]
                .get("path")
                .and_then(Value::as_array)
                .map(|p| {
                    p.iter()
                        .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .unwrap_or_else(|| "query".to_owned());
            return Err(DaggerError::Query { message, path }.into());
        }
        if !status.is_success() {
            return Err(DaggerError::BadResponse {
                reason: format!("HTTP {status} without GraphQL errors"),
            }
            .into());
        }
        parsed.get("data").cloned().ok_or_else(|| {
            DaggerError::BadResponse {
                reason: "no `data` in the answer".to_owned(),
            }
            .into()
        })
    }

    fn transport(&self, e: reqwest::Error) -> ExecError {
        if e.is_connect() {
            DaggerError::Unavailable {
                url: self.url.clone(),
                reason: e.to_string(),
            }
            .into()
        } else {
            DaggerError::Transport(Box::new(e)).into()
        }
    }
}

#[async_trait]
impl Executor for DaggerExecutor {
    fn kind(&self) -> &'static str {
        "dagger"
    }

    /// `container_root/hg-<id>` when the id is safe to use as a name.
    fn work_dir_for(&self, task_id: &TaskId) -> Option<PathBuf> {
        let id = task_id.as_str();
        is_safe_id(id).then(|| Path::new(&self.config.container_root).join(format!("hg-{id}")))
    }

    async fn execute(
        &self,
        spec: TaskSpec,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        let image = match spec.image.as_deref().or(self.config.image.as_deref()) {
            Some(image) if !image.is_empty() => image.to_owned(),
            _ => {
                return Err(ExecError::InvalidSpec(
                    "the dagger executor needs an image (neither spec.image nor dagger.image is set)"
                        .to_owned(),
                ));
            }
        };
        crate::paths::validate(&spec)?;
        let stdin = String::from_utf8(spec.stdin.to_vec()).map_err(|_| {
            ExecError::InvalidSpec(
                "the dagger executor passes stdin as a GraphQL string: it must be UTF-8".to_owned(),
            )
        })?;
        let name = work_dir_name(spec.id.as_str());
        let input = WorkDir::create(&self.config.work_root, &format!("{name}-in")).await?;
        let output = if spec.outputs.is_empty() {
            None
        } else {
            Some(WorkDir::create(&self.config.work_root, &format!("{name}-out")).await?)
        };
        let started = Instant::now();
        let result = tokio::select! {
            r = self.run(&input, output.as_ref(), &name, &image, &spec, stdin) => r,
            () = tokio::time::sleep(spec.timeout) => Err(ExecError::DeadlineExceeded { after: spec.timeout }),
            () = cancel.cancelled() => Err(ExecError::Cancelled),
        };
        let result = match result {
            Ok((exit_code, stdout, stderr)) => {
                let files = match &output {
                    Some(dir) => dir.collect(&spec.outputs, spec.limits.max_file_bytes).await,
                    None => Ok(Vec::new()),
                };
                files.map(|files| {
                    let limit = spec.limits.max_stream_bytes;
                    let truncated = stdout.len() > limit || stderr.len() > limit;
                    TaskOutput {
                        exit_code,
                        stdout: cut(stdout, limit),
                        stderr: cut(stderr, limit),
                        truncated,
                        files,
                        duration: started.elapsed(),
                    }
                })
            }
            Err(e) => Err(e),
        };
        input.remove().await;
        if let Some(dir) = output {
            dir.remove().await;
        }
        match &result {
            Ok(out) => {
                tracing::debug!(task = %spec.id.as_str(), %image, exit_code = out.exit_code, duration = ?out.duration, "dagger pipeline finished")
            }
            Err(error) => {
                tracing::debug!(task = %spec.id.as_str(), %image, %error, "dagger pipeline failed")
            }
        }
        result
    }
}

impl DaggerExecutor {
    /// The two queries: load the input directory, then run the pipeline.
    async fn run(
        &self,
        input: &WorkDir,
        output: Option<&WorkDir>,
        name: &str,
        image: &str,
        spec: &TaskSpec,
        stdin: String,
    ) -> Result<(i32, String, String), ExecError> {
        input.materialise(&spec.inputs).await?;
        let limit = spec
            .limits
            .max_stream_bytes
            .saturating_mul(2 * 6)
            .saturating_add(RESPONSE_SLACK);
        let data = self
            .query(
                format!(
                    "query {{ host {{ directory(path: {}) {{ id }} }} }}",
                    gql(&input.path().display().to_string())
                ),
                RESPONSE_SLACK,
            )
            .await?;
        let id = data
            .pointer("/host/directory/id")
            .and_then(Value::as_str)
            .ok_or_else(|| DaggerError::BadResponse {
                reason: "no host.directory.id in the answer".to_owned(),
            })?;
        let mount = format!(
            "{}/{name}",
            self.config.container_root.trim_end_matches('/')
        );
        let workdir = match &spec.cwd {
            Some(rel) => format!("{mount}/{}", relative(rel, "cwd")?.display()),
            None => mount.clone(),
        };
        let pipeline = Pipeline {
            image,
            mount: &mount,
            source: id,
            workdir: &workdir,
            spec,
            stdin: &stdin,
            export: output.map(|d| d.path().display().to_string()),
        };
        let (query, keys) = pipeline.build();
        let data = self.query(query, limit).await?;
        let mut at = &data;
        for key in &keys {
            at = at.get(key).ok_or_else(|| DaggerError::BadResponse {
                reason: format!("no {key:?} in the answer"),
            })?;
        }
        let text = |field: &str| -> Result<String, ExecError> {
            at.get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    DaggerError::BadResponse {
                        reason: format!("withExec answered no string {field:?}"),
                    }
                    .into()
                })
        };
        let exit_code = at
            .get("exitCode")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
            .ok_or_else(|| DaggerError::BadResponse {
                reason: "withExec answered no integer exitCode".to_owned(),
            })?;
        Ok((exit_code, text("stdout")?, text("stderr")?))
    }
}

/// The pipeline query of one task.
struct Pipeline<'a> {
    image: &'a str,
    mount: &'a str,
    source: &'a str,
    workdir: &'a str,
    spec: &'a TaskSpec,
    stdin: &'a str,
    export: Option<String>,
}

impl Pipeline<'_> {
    /// The query, and the keys leading from `data` to the `withExec` object of its answer.
    fn build(&self) -> (String, Vec<String>) {
        let mut steps = vec![
            format!("from(address: {})", gql(self.image)),
            format!(
                "withDirectory(path: {}, source: {})",
                gql(self.mount),
                gql(self.source)
            ),
            format!("withWorkdir(path: {})", gql(self.workdir)),
        ];
        for (k, v) in &self.spec.env {
            steps.push(format!(
                "withEnvVariable(name: {}, value: {})",
                gql(k),
                gql(v)
            ));
        }
        let args: Vec<String> = self.spec.command.iter().map(|a| gql(a)).collect();
        let mut exec = format!("withExec(args: [{}]", args.join(", "));
        if !self.stdin.is_empty() {
            exec.push_str(&format!(", stdin: {}", gql(self.stdin)));
        }
        exec.push_str(", expect: ANY)");
        steps.push(exec);
        let mut leaves = "stdout stderr exitCode".to_owned();
        if let Some(export) = &self.export {
            leaves.push_str(&format!(
                " directory(path: {}) {{ export(path: {}) }}",
                gql(self.mount),
                gql(export)
            ));
        }
        let mut query = "query { container { ".to_owned();
        for step in &steps {
            query.push_str(step);
            query.push_str(" { ");
        }
        query.push_str(&leaves);
        for _ in 0..steps.len() + 1 {
            query.push_str(" }");
        }
        query.push_str(" }");
        let mut keys = vec!["container".to_owned()];
        keys.extend(
            steps
                .iter()
                .map(|s| s.split('(').next().unwrap_or_default().to_owned()),
        );
        (query, keys)
    }
}

/// A GraphQL string literal (JSON's escaping is valid GraphQL).
fn gql(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The first `limit` bytes of `s`.
fn cut(s: String, limit: usize) -> Bytes {
    let mut bytes = s.into_bytes();
    bytes.truncate(limit);
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_graphql() {
        assert_eq!(gql("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(gql("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn pipeline_nests_every_step() {
        let mut spec = TaskSpec::new(
            vec!["sh".into(), "-c".into(), "echo hi".into()],
            Duration::from_secs(1),
        );
        spec.env.insert("A".into(), "1".into());
        let p = Pipeline {
            image: "alpine",
            mount: "/work/hg-x",
            source: "ID",
            workdir: "/work/hg-x",
            spec: &spec,
            stdin: "",
            export: None,
        };
        let (query, keys) = p.build();
        assert_eq!(
            query,
            r#"query { container { from(address: "alpine") { withDirectory(path: "/work/hg-x", source: "ID") { withWorkdir(path: "/work/hg-x") { withEnvVariable(name: "A", value: "1") { withExec(args: ["sh", "-c", "echo hi"], expect: ANY) { stdout stderr exitCode } } } } } } }"#
        );
        assert_eq!(
            keys,
            [
                "container",
                "from",
                "withDirectory",
                "withWorkdir",
                "withEnvVariable",
                "withExec"
            ]
        );
    }
}
