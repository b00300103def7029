//! Where definitions come from: a local directory (reloaded when a file changes) or an HTTP base
//! URL (TTL cache, last good copy when unreachable).

use crate::model::{AgentDefinition, parse_definition};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn};

/// A definition that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The file is not a valid definition.
    #[error("{file}: field `{field}`: {problem}")]
    Invalid {
        /// The file (path or URL).
        file: String,
        /// The field (`brain.provider`, `capabilities.grants[1]`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// No definition for that agent.
    #[error("no agent definition {name:?} at {location}")]
    NotFound {
        /// The agent.
        name: String,
        /// Where it was looked for.
        location: String,
    },
    /// Reading failed.
    #[error("reading {file}: {reason}")]
    Unreadable {
        /// The file (path or URL).
        file: String,
        /// Why.
        reason: String,
    },
}

#[derive(Clone)]
struct LocalEntry {
    stamp: (SystemTime, u64, PathBuf),
    def: Arc<AgentDefinition>,
}

struct Local {
    root: PathBuf,
    cache: Mutex<HashMap<String, LocalEntry>>,
}

struct RemoteEntry {
    fetched: Instant,
    def: Arc<AgentDefinition>,
}

struct Remote {
    base: String,
    ttl: Duration,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, RemoteEntry>>,
}

/// Agent definitions from a local directory or an HTTP base URL. Cloning shares the cache.
#[derive(Clone)]
pub struct Definitions {
    inner: Arc<Inner>,
}

enum Inner {
    Local(Local),
    Remote(Remote),
}

impl std::fmt::Debug for Definitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Definitions {
    /// `root/agents/NAME/config.yaml` (`AGENT_DEFINITIONS_PATH`). A changed file (or a git-sync
    /// symlink swap) is re-read on the next [`Definitions::get`].
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner::Local(Local {
                root: root.into(),
                cache: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// `base/agents/NAME/config.yaml` over HTTP(S) (`AGENT_DEFINITIONS_URL`), cached for `ttl`;
    /// while the server is unreachable the last good copy is used. `base/agents/index.json`
    /// (a JSON list of names) lists the agents.
    pub fn remote(base: &str, ttl: Duration) -> Result<Self, DefinitionError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DefinitionError::Unreadable {
                file: base.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner::Remote(Remote {
                base: base.trim_end_matches('/').to_owned(),
                ttl,
                http,
                cache: Mutex::new(HashMap::new()),
            })),
        })
    }

    /// Where definitions come from (path or URL).
    pub fn location(&self) -> String {
        match &*self.inner {
            Inner::Local(l) => l.root.display().to_string(),
            Inner::Remote(r) => r.base.clone(),
        }
    }

    /// The current definition of `name`, validated.
    pub async fn get(&self, name: &str) -> Result<Arc<AgentDefinition>, DefinitionError> {
        if !valid_name(name) {
            return Err(DefinitionError::NotFound {
                name: name.to_owned(),
                location: self.location(),
            });
        }
        match &*self.inner {
            Inner::Local(l) => {
                let root = l.root.clone();
                let name2 = name.to_owned();
                let cached = l.cache.lock().get(name).cloned();
                let loaded = tokio::task::spawn_blocking(move || load_local(&root, &name2, cached))
                    .await
                    .map_err(|e| DefinitionError::Unreadable {
                        file: name.to_owned(),
                        reason: e.to_string(),
                    })??;
                if let Some(entry) = loaded.1 {
                    info!(agent = name, file = %entry.stamp.2.display(), "agent_definition_loaded");
                    l.cache.lock().insert(name.to_owned(), entry);
                }
                Ok(loaded.0)
            }
            Inner::Remote(r) => r.get(name).await,
        }
    }

    /// Names of every defined agent (directories under `agents/`, or `agents/index.json`).
    pub async fn names(&self) -> Result<Vec<String>, DefinitionError> {
        match &*self.inner {
            Inner::Local(l) => {
                let dir = l.root.join("agents");
                let read = std::fs::read_dir(&dir).map_err(|e| DefinitionError::Unreadable {
                    file: dir.display().to_string(),
                    reason: e.to_string(),
                })?;
                let mut names: Vec<String> = read
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("config.yaml").is_file())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| valid_name(n))
                    .collect();
                names.sort();
                Ok(names)
            }
            Inner::Remote(r) => {
                let url = format!("{}/agents/index.json", r.base);
                let text = r.fetch(&url).await?;
                serde_json::from_str(&text).map_err(|e| DefinitionError::Invalid {
                    file: url,
                    field: "(top level)".into(),
                    problem: format!("expected a JSON list of agent names: {e}"),
                })
            }
        }
    }
}

type Loaded = (Arc<AgentDefinition>, Option<LocalEntry>);

fn load_local(
    root: &Path,
    name: &str,
    cached: Option<LocalEntry>,
) -> Result<Loaded, DefinitionError> {
    let file = root.join("agents").join(name).join("config.yaml");
    let shown = file.display().to_string();
    let meta = std::fs::metadata(&file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DefinitionError::NotFound {
                name: name.to_owned(),
                location: shown.clone(),
            }
        } else {
            DefinitionError::Unreadable {
                file: shown.clone(),
                reason: e.to_string(),
            }
        }
    })?;
    // git-sync swaps a symlink: the resolved path is part of the stamp.
    let real = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
    let stamp = (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
        real,
    );
    if let Some(c) = cached
        && c.stamp == stamp
    {
        return Ok((c.def, None));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| DefinitionError::Unreadable {
        file: shown.clone(),
        reason: e.to_string(),
    })?;
    let def = Arc::new(parse_definition(&shown, &text, Some(name))?);
    Ok((def.clone(), Some(LocalEntry { stamp, def })))
}

impl Remote {
    async fn fetch(&self, url: &str) -> Result<String, DefinitionError> {
        let unreadable = |reason: String| DefinitionError::Unreadable {
            file: url.to_owned(),
            reason,
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unreadable(e.without_url().to_string()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(DefinitionError::NotFound {
                name: url.to_owned(),
                location: self.base.clone(),
            });
        }
        if !resp.status().is_success() {
            return Err(unreadable(format!("HTTP {}", resp.status())));
        }
        resp.text()
            .await
            .map_err(|e| unreadable(e.without_url().to_string()))
    }

    async fn get(&self, name: &str) -> Result<Arc<AgentDefinition>, DefinitionError> {
        if let Some(e) = self.cache.lock().get(name)
            && e.fetched.elapsed() < self.ttl
        {
            return Ok(e.def.clone());
        }
        let url = format!("{}/agents/{name}/config.yaml", self.base);
        let fetched = match self.fetch(&url).await {
            Ok(text) => parse_definition(&url, &text, Some(name)).map(Arc::new),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(def) => {
                self.cache.lock().insert(
                    name.to_owned(),
                    RemoteEntry {
                        fetched: Instant::now(),
                        def: def.clone(),
                    },
                );
                Ok(def)
            }
            Err(e @ DefinitionError::Unreadable { .. }) => {
                if let Some(entry) = self.cache.lock().get(name) {
                    warn!(agent = name, error = %e, "agent_definition_unreachable_using_last_good");
                    return Ok(entry.def.clone());
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}
