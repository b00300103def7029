//! How an agent's step runs: the [`AgentExecutor`] seam, chosen per [`AgentKind`] from
//! [`Executors`]; [`ProcessExecutor`] adapts any SDK [`Executor`] (native, Docker, Dagger) to the
//! agent I/O contract, and [`NoopExecutor`] answers in process (for benchmarks).
//!
//! The agent I/O contract: the input JSON is passed in the `AGENT_INPUT` environment variable and
//! as the last argument after the agent's `command` (so the first one for a bare program); the
//! agent prints exactly one JSON document on stdout, logs on stderr, and exits 0 on success.

use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_core::{CancellationToken, ExecError, Executor, OutputLimits, TaskOutput, TaskSpec};
use hybridgrid_flow_model::{AgentKind, AgentSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One attempt of one step, as handed to an executor.
#[derive(Clone, Debug)]
pub struct AgentCall {
    /// Run id.
    pub run_id: String,
    /// Node id.
    pub node_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The agent's definition.
    pub agent: Arc<AgentSpec>,
    /// The action.
    pub action: String,
    /// The resolved, schema-checked input.
    pub input: serde_json::Value,
    /// Longest the attempt may run.
    pub timeout: Duration,
    /// Bytes of stdout and of stderr to keep.
    pub max_stream_bytes: usize,
}

/// Runs agent steps of some kinds. A non-zero exit is a result (in [`TaskOutput`]), not an error.
#[async_trait]
pub trait AgentExecutor: Send + Sync + 'static {
    /// Runs one attempt until it exits, its timeout passes, or `cancel` fires.
    async fn run(
        &self,
        call: AgentCall,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError>;
}

/// The executor for each agent kind.
#[derive(Clone, Default)]
pub struct Executors {
    by_kind: BTreeMap<AgentKind, Arc<dyn AgentExecutor>>,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_kind.keys()).finish()
    }
}

impl Executors {
    /// No executor at all: every step fails with "no executor for kind".
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs agents of `kind` on `executor`.
    pub fn with(mut self, kind: AgentKind, executor: Arc<dyn AgentExecutor>) -> Self {
        self.by_kind.insert(kind, executor);
        self
    }

    /// Native agents as local processes with private work directories under `work_root`.
    #[cfg(feature = "native")]
    pub fn native(work_root: impl Into<std::path::PathBuf>) -> Self {
        let native =
            hybridgrid_executors::NativeExecutor::new(hybridgrid_executors::NativeConfig {
                work_root: work_root.into(),
                path: None,
            });
        Self::new().with(
            AgentKind::Native,
            Arc::new(ProcessExecutor::new(Arc::new(native))),
        )
    }

    /// Container agents on `docker`: each agent's `network` grant (`bridge` when granted, else
    /// `none`) and `resources` (CPUs, memory) override the executor's default policy.
    #[cfg(feature = "docker")]
    pub fn docker(self, docker: hybridgrid_executors::DockerExecutor) -> Self {
        self.with(AgentKind::Container, Arc::new(ContainerExecutor { docker }))
    }

    /// Dagger agents on `dagger` (the agent's `image` and `command` become the pipeline).
    #[cfg(feature = "dagger")]
    pub fn dagger(self, dagger: hybridgrid_executors::DaggerExecutor) -> Self {
        self.with(
            AgentKind::Dagger,
            Arc::new(ProcessExecutor::new(Arc::new(dagger))),
        )
    }

    /// LLM agents on `agents` (see [`crate::LlmAgents`]).
    #[cfg(feature = "llm")]
    pub fn llm(self, agents: crate::LlmAgents) -> Self {
        self.with(AgentKind::Llm, Arc::new(agents))
    }

    /// Every kind answered in process by [`NoopExecutor`] (benchmarks).
    pub fn noop() -> Self {
        let noop: Arc<dyn AgentExecutor> = Arc::new(NoopExecutor);
        [
            AgentKind::Native,
            AgentKind::Container,
            AgentKind::Llm,
            AgentKind::Dagger,
        ]
        .into_iter()
        .fold(Self::new(), |e, k| e.with(k, noop.clone()))
    }

    /// The executor for `kind`.
    pub fn get(&self, kind: AgentKind) -> Option<&Arc<dyn AgentExecutor>> {
        self.by_kind.get(&kind)
    }
}

/// Adapts an SDK [`Executor`] (native process, Docker container, Dagger pipeline) to the agent
/// I/O contract: command = the agent's `command` plus the input JSON, `AGENT_INPUT` (and
/// `AGENT_ACTION`, `AGENT_RUN_ID`, `AGENT_NODE_ID`) in the environment, the agent's `image` for
/// container kinds.
#[derive(Clone)]
pub struct ProcessExecutor {
    inner: Arc<dyn Executor>,
}

impl ProcessExecutor {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Executor>) -> Self {
        Self { inner }
    }

    /// The task spec for `call`.
    pub fn spec(call: &AgentCall) -> TaskSpec {
        let input = call.input.to_string();
        let mut command = call.agent.command.clone();
        command.push(input.clone());
        let mut spec = TaskSpec::new(command, call.timeout);
        spec.id = hybridgrid_core::TaskId::new(format!(
            "{}-{}-{}",
            call.run_id, call.node_id, call.attempt
        ));
        spec.env = call.agent.env.clone();
        spec.env.insert("AGENT_INPUT".into(), input);
        spec.env.insert("AGENT_ACTION".into(), call.action.clone());
        spec.env.insert("AGENT_RUN_ID".into(), call.run_id.clone());
        spec.env
            .insert("AGENT_NODE_ID".into(), call.node_id.clone());
        if matches!(call.agent.kind, AgentKind::Container | AgentKind::Dagger) {
            spec.image = call.agent.image.clone();
        }
        spec.limits = OutputLimits {
            max_stream_bytes: call.max_stream_bytes,
            ..OutputLimits::default()
        };
        spec
    }
}

#[async_trait]
impl AgentExecutor for ProcessExecutor {
    async fn run(
        &self,
        call: AgentCall,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        let spec = Self::spec(&call);
        self.inner.execute(spec, cancel).await
    }
}

/// Answers every step at once with `{"ok": true, "node": <id>}` and exit 0, without a process:
/// what the engine costs per step, measured alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopExecutor;

#[async_trait]
impl AgentExecutor for NoopExecutor {
    async fn run(
        &self,
        call: AgentCall,
        _cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        let started = Instant::now();
        let out = serde_json::json!({"ok": true, "node": call.node_id});
        Ok(TaskOutput {
            exit_code: 0,
            stdout: Bytes::from(out.to_string()),
            stderr: Bytes::new(),
            truncated: false,
            files: Vec::new(),
            duration: started.elapsed(),
        })
    }
}

/// Container agents: [`ProcessExecutor`]'s contract on a [`hybridgrid_executors::DockerExecutor`]
/// whose policy follows the agent's grants.
#[cfg(feature = "docker")]
struct ContainerExecutor {
    docker: hybridgrid_executors::DockerExecutor,
}

#[cfg(feature = "docker")]
#[async_trait]
impl AgentExecutor for ContainerExecutor {
    async fn run(
        &self,
        call: AgentCall,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        let mut policy = self.docker.policy().clone();
        policy.network = if call.agent.network {
            "bridge".into()
        } else {
            "none".into()
        };
        if let Some(r) = &call.agent.resources {
            policy.cpus = r.cpus.or(policy.cpus);
            policy.memory_mb = r.memory_mb.or(policy.memory_mb);
        }
        let docker = self.docker.with_policy(policy)?;
        docker.execute(ProcessExecutor::spec(&call), cancel).await
    }
}
