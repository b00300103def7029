//! The wrapper's side of the compile cache: direct-mode lookups before preprocessing, result
//! lookups (local, then shared) after it, and storing what a miss produced.
//!
//! The hit path is synchronous and reads entry files directly (same layout and framing as
//! [`DiskCache`]: `dir/ab/cdef…`, checked by [`hybridgrid_cache::entry::decode`]), so a hit costs
//! a few small file reads and no directory scan; the [`DiskCache`] (whose `open` scans the
//! directory to enforce the size bound) is opened only on a miss, to store.

use crate::error::ClientError;
use crate::notice::notice;
use crate::paths::write_atomic;
use crate::stats;
use crate::step::Step;
use bytes::Bytes;
use hybridgrid_cache::compile::{FileMemo, FileRecord, Manifest};
use hybridgrid_cache::{DiskCache, DiskCacheConfig, entry};
use hybridgrid_compiler::CompileJob;
use hybridgrid_core::spec::SpecError;
use hybridgrid_core::{Cache, CacheError, Digest, Toolchain};
use hybridgrid_farm_protocol::config::CacheConfig;
use hybridgrid_farm_protocol::{CachedResult, DirectEntry};
use std::cell::RefCell;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A header modified after (or this close before) the start of the compile is not recorded in a
/// manifest: the preprocessor may have seen another version than the one hashed afterwards. File
/// times come from the kernel's coarse clock, which lags real time by up to a tick (4-10 ms).
const RACE_MARGIN: Duration = Duration::from_millis(20);
/// A header of a depend-mode compile modified after (or this close before) its start makes the
/// result uncached: the compiler may have read another version than the one hashed afterwards.
const HEADER_MARGIN: Duration = Duration::from_millis(10);
/// A hit refreshes an entry's mtime when older than this (recency for LRU eviction, as DiskCache).
const TOUCH_AFTER: Duration = Duration::from_secs(60);
/// How long a compile waits for the shared tier to connect before going on without it.
pub const SHARED_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The local directory of the cache under `cfg`: `cache.dir`, else `~/.hybridgrid/cache`.
pub fn cache_dir(cfg: &CacheConfig) -> PathBuf {
    cfg.dir.clone().unwrap_or_else(DiskCacheConfig::default_dir)
}

/// The size bound of `cfg` in bytes.
pub fn max_bytes(cfg: &CacheConfig) -> u64 {
    (cfg.max_size_gb * 1e9) as u64
}

/// Opens the shared tier of `cfg`, if one is configured.
pub async fn shared_tier(cfg: &CacheConfig) -> Result<Option<Arc<dyn Cache>>, SpecError> {
    match cfg.shared_spec()? {
        Some(spec) => hybridgrid_cache::open_cache(&spec).await.map(Some),
        None => Ok(None),
    }
}

/// One compile's view of the cache (one per wrapper process).
pub struct ClientCache {
    cfg: CacheConfig,
    dir: PathBuf,
    log: PathBuf,
    memo: FileMemo,
    diag_env: [u8; 32],
    disk: RefCell<Option<DiskCache>>,
    /// The shared tier once asked for: `Some(None)` when absent or unreachable (asked once).
    shared: RefCell<Option<Option<Arc<dyn Cache>>>>,
    /// Why the direct-mode lookup missed, for the miss's reason.
    direct_miss: std::cell::Cell<&'static str>,
}

/// What a lookup that missed knows, to store the result of the compile that follows.
pub struct Pending {
    manifest: Option<Digest>,
    result: Option<Digest>,
    headers: Vec<PathBuf>,
    /// The headers' records when they were already taken (depend mode), so they are not
    /// stat'ed and hashed again for the direct-mode entry.
    records: Option<Vec<FileRecord>>,
    started: SystemTime,
    /// Why nothing was found (`new_source_or_flags`, `headers_changed`, `time_dependent`, ...).
    reason: &'static str,
}

impl ClientCache {
    /// The cache of `cfg`, or `None` when `cache.enabled` is false.
    pub fn new(cfg: &CacheConfig, stats_log: PathBuf) -> Option<ClientCache> {
        cfg.enabled.then(|| ClientCache {
            cfg: cfg.clone(),
            dir: cache_dir(cfg),
            log: stats_log,
            memo: FileMemo::new(),
            diag_env: hybridgrid_farm_protocol::process_diag_env(),
            disk: RefCell::new(None),
            shared: RefCell::new(None),
            direct_miss: std::cell::Cell::new("new_source_or_flags"),
        })
    }

    fn entry_path(&self, key: &Digest) -> PathBuf {
        let hex = key.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// Reads and verifies a local entry; a damaged one is deleted and counted, and is a miss.
    fn read_local(&self, key: &Digest) -> Option<Bytes> {
        let path = self.entry_path(key);
        let mut file = std::fs::File::open(&path).ok()?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut buf).ok()?;
        match entry::decode(key, Bytes::from(buf)) {
            Ok(payload) => {
                let stale = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_none_or(|age| age > TOUCH_AFTER);
                if stale {
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(payload)
            }
            Err(defect) => {
                notice(
                    "cache",
                    &format!(
                        "corrupt cache entry {} dropped ({defect}); compiled",
                        path.display()
                    ),
                );
                let _ = std::fs::remove_file(&path);
                stats::record_event(&self.log, "cache_corrupt", "1");
                None
            }
        }
    }

    /// Direct mode: the manifest key of `job`, then a result without preprocessing if every
    /// header the manifest lists still has its recorded contents. Writes the object, the depfile
    /// and the recorded stderr, and returns the finished step; `None` on a miss.
    pub fn serve_direct(
        &self,
        tc: &Toolchain,
        job: &CompileJob,
        args: &[OsString],
    ) -> (Option<Step>, Option<Digest>) {
        let Ok(cwd) = std::env::current_dir() else {
            return (None, None);
        };
        let Ok(source_digest) = self.memo.digest(job.source()) else {
            return (None, None);
        };
        let mkey =
            hybridgrid_farm_protocol::manifest_key(tc, job, args, &source_digest, &cwd, &|v| {
                std::env::var_os(v)
            });
        let hit = (|| {
            self.direct_miss.set("new_source_or_flags");
            let manifest = Manifest::decode(&self.read_local(&mkey)?).ok()?;
            self.direct_miss.set("headers_changed");
            let dkey = manifest.lookup(&self.memo)?;
            self.direct_miss.set("entry_missing");
            let direct = DirectEntry::decode(&self.read_local(&dkey)?).ok()?;
            if direct.depfile.is_some() != job.depfile().is_some() {
                return None;
            }
            let result = CachedResult::decode(&self.read_local(&direct.result)?).ok()?;
            result
                .servable_under(&self.diag_env)
                .then_some((direct, result))
        })();
        let Some((direct, result)) = hit else {
            return (None, Some(mkey));
        };
        if let (Some(dep), Some(bytes)) = (job.depfile(), &direct.depfile)
            && let Err(e) = write_atomic(&dep.path, bytes)
        {
            notice(
                "cache",
                &format!("cannot write {}: {e}", dep.path.display()),
            );
            return (None, Some(mkey));
        }
        (self.finish_hit(job, &result, "local"), Some(mkey))
    }

    /// Writes the object and replays stderr; `None` if the object cannot be written (the compile
    /// then runs and reports the problem itself).
    fn finish_hit(&self, job: &CompileJob, result: &CachedResult, tier: &str) -> Option<Step> {
        if let Err(e) = write_atomic(job.output(), &result.object) {
            notice(
                "cache",
                &format!("cannot write {}: {e}", job.output().display()),
            );
            return None;
        }
        let _ = std::io::stderr().write_all(&result.stderr);
        Some(Step::Exit(
            result.exit_code,
            stats::Served::CacheHit { tier: tier.into() },
        ))
    }

    /// After preprocessing: looks the result up locally, then in the shared tier. On a hit the
    /// object is written (the depfile was written by the preprocessing) and the manifest recorded;
    /// on a miss the returned [`Pending`] stores the result of the compile that follows.
    pub async fn serve_preprocessed(
        &self,
        tc: &Toolchain,
        job: &CompileJob,
        manifest: Option<Digest>,
        preprocessed: &[u8],
        started: SystemTime,
        verify_shared: Option<&std::path::Path>,
    ) -> Result<Step, Pending> {
        let headers = hybridgrid_farm_protocol::included_files(preprocessed);
        let mut pending = Pending {
            manifest,
            result: None,
            headers,
            records: None,
            started,
            reason: self.direct_miss.get(),
        };
        if hybridgrid_farm_protocol::time_dependent(preprocessed) {
            pending.manifest = None;
            pending.reason = "time_dependent";
            return Err(pending);
        }
        let rkey = hybridgrid_farm_protocol::result_key(tc, job, preprocessed);
        pending.result = Some(rkey);
        let decode = |b: Bytes| {
            CachedResult::decode(&b)
                .ok()
                .filter(|r| r.servable_under(&self.diag_env))
        };
        let mut found = self
            .read_local(&rkey)
            .and_then(decode)
            .map(|r| (r, "local"));
        let shared = match found {
            None => self.shared().await,
            Some(_) => None,
        };
        let fetched = match &shared {
            Some(shared) => {
                let forged_before = shared.stats().forged;
                let got = shared.get(&rkey).await;
                if shared.stats().forged > forged_before {
                    notice(
                        "cache",
                        &format!(
                            "the shared cache entry for {} failed authentication (forged, altered, or written with another cache.shared_secret); not used",
                            job.output().display()
                        ),
                    );
                    stats::record_event(&self.log, "cache_forged", "1");
                }
                got.ok().flatten()
            }
            None => None,
        };
        if let Some(shared) = shared
            && let Some(bytes) = fetched
            && let Some(mut r) = decode(bytes.clone())
        {
            let mut keep = bytes;
            // `verify.cache_rate`: recompile this text locally, exactly as a worker would; a
            // shared entry with other bytes is replaced for everyone, and never kept locally.
            if let Some(compiler) = verify_shared {
                match crate::verify::local_object(compiler, job, preprocessed) {
                    Ok(local) if local == r.object => stats::record(
                        &self.log,
                        &stats::Served::Verified {
                            worker: "shared_cache".into(),
                        },
                    ),
                    Ok(local) => {
                        notice(
                            "verify",
                            &format!(
                                "the shared cache held a different object for {}; used the local compile",
                                job.output().display()
                            ),
                        );
                        stats::record(
                            &self.log,
                            &stats::Served::VerifyMismatch {
                                worker: "shared_cache".into(),
                            },
                        );
                        r.object = local;
                        keep = Bytes::from(r.encode());
                        if !self.cfg.shared_read_only
                            && let Err(e) = shared.put(&rkey, keep.clone()).await
                        {
                            notice(
                                "cache",
                                &format!("cannot replace the shared cache entry: {e}"),
                            );
                        }
                    }
                    Err(e) => notice(
                        "verify",
                        &format!(
                            "verification of a shared cache hit for {} skipped: {e}",
                            job.output().display()
                        ),
                    ),
                }
            }
            // Keep a local copy: the next hit needs no network.
            self.put(&rkey, keep).await;
            found = Some((r, "shared"));
        }
        let Some((result, tier)) = found else {
            return Err(pending);
        };
        match self.finish_hit(job, &result, tier) {
            Some(step) => {
                self.record_direct(&pending, job).await;
                self.flush_evictions();
                Ok(step)
            }
            None => Err(pending),
        }
    }

    /// Counts a miss in the stats log, with its reason: `new_source_or_flags` (no entry for this
    /// source, flags and compiler), `headers_changed` (one for this source and flags, but an
    /// included file changed), `time_dependent` (`__DATE__`/`__TIME__`: never cached),
    /// `entry_missing` (evicted or damaged).
    pub fn note_miss(&self, pending: &Pending) {
        stats::record_event(&self.log, "cache_miss", pending.reason);
    }

    /// The shared tier, connected once per process; a server that does not answer within
    /// [`SHARED_CONNECT_TIMEOUT`] is reported and not asked again by this compile.
    async fn shared(&self) -> Option<Arc<dyn Cache>> {
        if let Some(known) = self.shared.borrow().as_ref() {
            return known.clone();
        }
        let connected =
            match tokio::time::timeout(SHARED_CONNECT_TIMEOUT, shared_tier(&self.cfg)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    notice("cache", &format!("shared compile cache unavailable: {e}"));
                    None
                }
                Err(_) => {
                    // The URL is not repeated: it may carry credentials.
                    notice(
                        "cache",
                        &format!(
                            "shared compile cache did not answer within {SHARED_CONNECT_TIMEOUT:?}"
                        ),
                    );
                    None
                }
            };
        *self.shared.borrow_mut() = Some(connected.clone());
        connected
    }

    async fn disk(&self) -> Option<DiskCache> {
        if let Some(d) = self.disk.borrow().as_ref() {
            return Some(d.clone());
        }
        // Each compile is its own process: the directory's total is kept in a shared counter,
        // so a miss does not scan the whole cache to know it.
        let config = DiskCacheConfig {
            shared_size: true,
            ..DiskCacheConfig::new(self.dir.clone(), max_bytes(&self.cfg))
        };
        match DiskCache::open(config).await {
            Ok(d) => {
                *self.disk.borrow_mut() = Some(d.clone());
                Some(d)
            }
            Err(e) => {
                notice(
                    "cache",
                    &format!("compile cache disabled for this compile: {e}"),
                );
                None
            }
        }
    }

    async fn put(&self, key: &Digest, value: Bytes) {
        if let Some(disk) = self.disk().await
            && let Err(e) = disk.put(key, value).await
        {
            notice("cache", &format!("cannot store in the compile cache: {e}"));
        }
    }

    fn flush_evictions(&self) {
        if let Some(d) = self.disk.borrow().as_ref() {
            let n = d.stats().evictions;
            if n > 0 {
                stats::record_event(&self.log, "cache_evictions", &n.to_string());
            }
        }
    }

    /// Records the direct-mode entry of a compile whose result is stored under `pending.result`:
    /// the headers it read (unless one changed during the compile) and the depfile it wrote.
    async fn record_direct(&self, pending: &Pending, job: &CompileJob) {
        let (Some(mkey), Some(rkey)) = (pending.manifest, pending.result) else {
            return;
        };
        let records = match &pending.records {
            Some(known) => known.clone(),
            None => match self.memo.records(&pending.headers) {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        let limit = time_ns(pending.started) - RACE_MARGIN.as_nanos() as i64;
        if records.iter().any(|r| r.mtime_ns >= limit) {
            tracing::debug!("a header changed during the compile: no direct-mode entry");
            return;
        }
        let depfile = match job.depfile() {
            Some(dep) => match std::fs::read(&dep.path) {
                Ok(b) => Some(b),
                Err(_) => return,
            },
            None => None,
        };
        let dkey = hybridgrid_farm_protocol::direct_entry_key(&mkey, &rkey, depfile.as_deref());
        let direct = DirectEntry {
            result: rkey,
            depfile,
        };
        self.put(&dkey, direct.encode().into()).await;
        let mut manifest = self
            .read_local(&mkey)
            .and_then(|b| Manifest::decode(&b).ok())
            .unwrap_or_default();
        manifest.record(records, dkey);
        self.put(&mkey, manifest.encode().into()).await;
    }

    /// Stores a successful compile's result (object read from `job.output()`) locally and, when
    /// it printed nothing, in the shared tier; then its direct-mode entry.
    pub async fn store(&self, pending: &Pending, job: &CompileJob, stderr: Vec<u8>) {
        let Some(rkey) = pending.result else {
            return;
        };
        let Ok(object) = std::fs::read(job.output()) else {
            return;
        };
        let result = CachedResult {
            exit_code: 0,
            stderr,
            diag_env: self.diag_env,
            object,
        };
        let bytes = Bytes::from(result.encode());
        self.put(&rkey, bytes.clone()).await;
        if result.stderr.is_empty()
            && !self.cfg.shared_read_only
            && let Some(shared) = self.shared().await
            && let Err(e) = shared.put(&rkey, bytes).await
        {
            notice("cache", &format!("cannot store in the shared cache: {e}"));
        }
        self.record_direct(pending, job).await;
        self.flush_evictions();
    }

    /// Compiles the already preprocessed text locally, exactly as a worker would
    /// ([`CompileJob::remote_command`]: same object, debug info included), so a local miss does
    /// not preprocess twice. Only a clean compile (exit 0, nothing printed) is kept and stored;
    /// otherwise `None`, and the caller runs the original command for exact diagnostics.
    pub async fn compile_text_locally(
        &self,
        compiler: &Path,
        job: &CompileJob,
        preprocessed: &[u8],
        pending: &Pending,
        served: stats::Served,
    ) -> Option<Step> {
        let done = compile_text_here(compiler, job, preprocessed);
        match done {
            Ok(true) => {
                self.store(pending, job, Vec::new()).await;
                Some(Step::Exit(0, served))
            }
            Ok(false) => None,
            Err(e) => {
                tracing::debug!(error = %e, "local compile of the preprocessed text not possible");
                None
            }
        }
    }

    /// Runs the original compile locally with its output captured, replays it, and stores the
    /// result when it succeeded (warnings included). Failures are not cached.
    pub async fn compile_locally(
        &self,
        compiler: &Path,
        args: &[OsString],
        job: &CompileJob,
        pending: &Pending,
        served: stats::Served,
    ) -> Result<Step, ClientError> {
        let out = Command::new(compiler)
            .args(args)
            .output()
            .map_err(|source| ClientError::Spawn {
                program: compiler.display().to_string(),
                source,
            })?;
        let _ = std::io::stdout().write_all(&out.stdout);
        let _ = std::io::stderr().write_all(&out.stderr);
        let code = out.status.code().unwrap_or(1);
        // This compile read the headers again, after the text the key hashes was made: if any of
        // them changed since the build step started, the object may not match the key.
        if out.status.success()
            && out.stdout.is_empty()
            && headers_unchanged_since(&pending.headers, pending.started)
        {
            self.store(pending, job, out.stderr).await;
        }
        Ok(Step::Exit(code, served))
    }
}

impl ClientCache {
    /// Depend mode (as ccache's): with no shared tier, a miss that compiles on this machine needs
    /// no preprocessing for its key. The compile runs as given (plus `-MD -MF <temp>` when it asks
    /// for no depfile) and its result is keyed on the manifest key and the files its depfile
    /// lists. Not with `-MMD` (its depfile leaves out the system headers) or `-M`/`-MM`.
    pub fn depend_mode(&self, job: &CompileJob, args: &[OsString]) -> bool {
        let no_shared = matches!(self.cfg.shared_spec(), Ok(None));
        let partial_deps = args.iter().any(|a| {
            let a = a.as_encoded_bytes();
            a == b"-M" || a == b"-MM" || a.windows(4).any(|w| w == b"-MMD")
        });
        // The depfile must be one the compile writes itself (`-MD` with or without `-MF`).
        let own_depfile = job.depfile().is_none()
            || args.iter().any(|a| a == "-MD")
                && !args
                    .iter()
                    .any(|a| a.as_encoded_bytes().starts_with(b"-Wp,"));
        no_shared && !partial_deps && own_depfile
    }

    /// Runs the original compile locally in depend mode (see [`ClientCache::depend_mode`]) with its
    /// output captured and replayed; stores the result under the manifest key `mkey` when it
    /// succeeded (warnings included), printed nothing on stdout, and no file it read changed since
    /// `started` or uses the clock (`__DATE__`, `__TIME__`, `__TIMESTAMP__`).
    pub async fn compile_depend(
        &self,
        compiler: &Path,
        args: &[OsString],
        job: &CompileJob,
        mkey: Digest,
        started: SystemTime,
        served: stats::Served,
    ) -> Result<Step, ClientError> {
        let reason = self.direct_miss.get();
        stats::record_event(&self.log, "cache_miss", reason);
        let temp_dep = job.depfile().is_none().then(|| {
            std::env::temp_dir().join(format!(
                "hgbuild-{}-{}.d",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ))
        });
        let mut cmd = Command::new(compiler);
        cmd.args(args);
        if let Some(t) = &temp_dep {
            cmd.arg("-MD").arg("-MF").arg(t);
        }
        let out = cmd.output().map_err(|source| ClientError::Spawn {
            program: compiler.display().to_string(),
            source,
        })?;
        let _ = std::io::stdout().write_all(&out.stdout);
        let _ = std::io::stderr().write_all(&out.stderr);
        let code = out.status.code().unwrap_or(1);
        if out.status.success() && out.stdout.is_empty() {
            let dep_path = temp_dep
                .as_deref()
                .or(job.depfile().map(|d| d.path.as_path()));
            let headers = dep_path
                .and_then(|p| std::fs::read(p).ok())
                .map(|d| hybridgrid_farm_protocol::depfile_prerequisites(&d))
                .unwrap_or_default();
            // Each file is stat'ed and read once: hashed for the key, looked into for the clock,
            // and its mtime compared with the compile's start.
            let limit = time_ns(started).saturating_sub(HEADER_MARGIN.as_nanos() as i64);
            if !headers.is_empty()
                && let Ok(Some(records)) = self
                    .memo
                    .records_accepted(&headers, |b| !hybridgrid_farm_protocol::time_dependent(b))
                && records.iter().all(|r| r.mtime_ns < limit)
            {
                let rkey = hybridgrid_farm_protocol::depend_result_key(
                    &mkey,
                    records.iter().map(|r| (r.path.as_path(), &r.digest)),
                );
                let pending = Pending {
                    manifest: Some(mkey),
                    result: Some(rkey),
                    headers,
                    records: Some(records),
                    started,
                    reason,
                };
                self.store(&pending, job, out.stderr).await;
            }
        }
        if let Some(t) = &temp_dep {
            let _ = std::fs::remove_file(t);
        }
        Ok(Step::Exit(code, served))
    }
}

/// Compiles preprocessed text locally exactly as a worker would ([`CompileJob::remote_command`]:
/// same object, debug info included) and writes the object to `job.output()`. `Ok(false)` when
/// the compiler printed anything or failed (the caller reruns the original command for exact
/// diagnostics); `Err` when it could not be run at all.
pub(crate) fn compile_text_here(
    compiler: &Path,
    job: &CompileJob,
    preprocessed: &[u8],
) -> Result<bool, String> {
    let dir = std::env::temp_dir().join(format!(
        "hgbuild-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let run = || -> Result<bool, String> {
        let cmd = job
            .remote_command(preprocessed, &dir)
            .map_err(|e| e.to_string())?;
        cmd.write_input().map_err(|e| e.to_string())?;
        let out = Command::new(compiler)
            .args(&cmd.args)
            .current_dir(&cmd.cwd)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() || !out.stderr.is_empty() || !out.stdout.is_empty() {
            return Ok(false);
        }
        let object = std::fs::read(&cmd.output).map_err(|e| e.to_string())?;
        write_atomic(job.output(), &object).map_err(|e| e.to_string())?;
        Ok(true)
    };
    let done = run();
    let _ = std::fs::remove_dir_all(&dir);
    done
}

fn time_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Removes every local entry (`hgbuild --clear-cache`); returns the bytes freed.
pub async fn clear(cfg: &CacheConfig) -> Result<u64, CacheError> {
    let disk = DiskCache::open(DiskCacheConfig::new(cache_dir(cfg), max_bytes(cfg))).await?;
    let bytes = disk.stats().bytes_stored;
    disk.clear().await?;
    Ok(bytes)
}

/// Entries and bytes in the local cache directory now (for `hgbuild --stats`).
pub async fn local_usage(cfg: &CacheConfig) -> Result<(u64, u64), CacheError> {
    let disk = DiskCache::open(DiskCacheConfig::new(cache_dir(cfg), max_bytes(cfg))).await?;
    let s = disk.stats();
    Ok((s.entries, s.bytes_stored))
}

/// True when every file in `headers` still exists and was last modified before `since` (less
/// [`HEADER_MARGIN`] for coarse file-system clocks).
fn headers_unchanged_since(headers: &[PathBuf], since: SystemTime) -> bool {
    let limit = since.checked_sub(HEADER_MARGIN).unwrap_or(since);
    headers.iter().all(|h| {
        std::fs::metadata(h)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < limit)
    })
}
