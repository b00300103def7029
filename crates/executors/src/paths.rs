//! The private work directory: path validation, input materialisation, output collection, removal.

use bytes::Bytes;
use hybridgrid_core::{ExecError, InputFile, OutputFile, TaskSpec};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Checks that `path` (from a task spec) names a place inside the work directory: relative, not
/// empty, no `..`, no root or prefix. `what` says where it came from, for the error.
pub(crate) fn relative(path: &str, what: &str) -> Result<PathBuf, ExecError> {
    let refuse = |why: &str| ExecError::InvalidSpec(format!("{what} path {path:?} {why}"));
    if path.is_empty() {
        return Err(refuse("is empty"));
    }
    if path.contains('\0') {
        return Err(refuse("contains a NUL byte"));
    }
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is absolute")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refuse("names the work directory itself"));
    }
    Ok(out)
}

/// A task's private directory; removed when dropped (unless [`WorkDir::remove`] already did).
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
    removed: bool,
}

impl WorkDir {
    /// Creates `root/name` (and `root` if needed). Fails if `root/name` already exists.
    pub(crate) async fn create(root: &Path, name: &str) -> Result<Self, ExecError> {
        tokio::fs::create_dir_all(root)
            .await
            .map_err(|source| work_dir_error(root, source))?;
        let path = root.join(name);
        tokio::fs::create_dir(&path)
            .await
            .map_err(|source| work_dir_error(&path, source))?;
        Ok(Self {
            path,
            removed: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the input files. Paths are validated; since the directory is fresh and only regular
    /// files and directories are created here, no symlink can redirect a write outside it.
    pub(crate) async fn materialise(&self, inputs: &[InputFile]) -> Result<(), ExecError> {
        for input in inputs {
            let rel = relative(&input.path, "input")?;
            let full = self.path.join(&rel);
            if let Some(parent) = full.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|source| work_dir_error(parent, source))?;
            }
            if tokio::fs::symlink_metadata(&full).await.is_ok() {
                return Err(ExecError::InvalidSpec(format!(
                    "input path {:?} is given twice (or clashes with a directory)",
                    input.path
                )));
            }
            tokio::fs::write(&full, &input.contents)
                .await
                .map_err(|source| work_dir_error(&full, source))?;
            if input.executable {
                tokio::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755))
                    .await
                    .map_err(|source| work_dir_error(&full, source))?;
            }
        }
        Ok(())
    }

    /// Reads the requested output files that exist. A path reached through a symlink, or naming
    /// something other than a regular file, is refused; the total is bounded by `limit`.
    pub(crate) async fn collect(
        &self,
        outputs: &[String],
        limit: usize,
    ) -> Result<Vec<OutputFile>, ExecError> {
        let mut files = Vec::new();
        let mut total: usize = 0;
        for requested in outputs {
            let rel = relative(requested, "output")?;
            let Some(meta) = self.no_symlinks(&rel, requested).await? else {
                continue;
            };
            if !meta.is_file() {
                return Err(ExecError::InvalidSpec(format!(
                    "output path {requested:?} is not a regular file"
                )));
            }
            let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
            total = total.saturating_add(len);
            if total > limit {
                return Err(ExecError::OutputTooLarge { limit });
            }
            let full = self.path.join(&rel);
            let contents = tokio::fs::read(&full)
                .await
                .map_err(|source| work_dir_error(&full, source))?;
            // The file may have grown between stat and read (a process that escaped the group).
            total = total.saturating_sub(len).saturating_add(contents.len());
            if total > limit {
                return Err(ExecError::OutputTooLarge { limit });
            }
            files.push(OutputFile {
                path: requested.clone(),
                contents: Bytes::from(contents),
            });
        }
        Ok(files)
    }

    /// Walks `rel` component by component without following links. `None` when the path does not
    /// exist; `InvalidSpec` when any component is a symlink.
    async fn no_symlinks(
        &self,
        rel: &Path,
        requested: &str,
    ) -> Result<Option<std::fs::Metadata>, ExecError> {
        let mut at = self.path.clone();
        let mut last = None;
        for part in rel.components() {
            at.push(part);
            match tokio::fs::symlink_metadata(&at).await {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(ExecError::InvalidSpec(format!(
                        "output path {requested:?} goes through the symlink {}",
                        at.display()
                    )));
                }
                Ok(meta) => last = Some(meta),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    return Ok(None);
                }
                Err(source) => return Err(work_dir_error(&at, source)),
            }
        }
        Ok(last)
    }

    /// Removes the directory now; a failure is logged (the task's result stands).
    pub(crate) async fn remove(mut self) {
        self.removed = true;
        let path = std::mem::take(&mut self.path);
        if let Err(error) = tokio::fs::remove_dir_all(&path).await {
            tracing::warn!(path = %path.display(), %error, "cannot remove work directory");
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove work directory");
        }
    }
}

fn work_dir_error(path: &Path, source: std::io::Error) -> ExecError {
    ExecError::WorkDir {
        path: path.display().to_string(),
        source,
    }
}

/// Refuses a spec whose command, environment or paths are unusable by any executor, before
/// touching the disk (the image is each executor's own business).
pub(crate) fn validate(spec: &TaskSpec) -> Result<(), ExecError> {
    match spec.command.first() {
        None => return Err(ExecError::InvalidSpec("empty command".to_owned())),
        Some(p) if p.is_empty() || p.contains('\0') => {
            return Err(ExecError::InvalidSpec(format!("bad program name {p:?}")));
        }
        Some(_) => {}
    }
    if let Some(arg) = spec.command.iter().find(|a| a.contains('\0')) {
        return Err(ExecError::InvalidSpec(format!(
            "argument {arg:?} contains a NUL byte"
        )));
    }
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(ExecError::InvalidSpec(format!(
                "bad environment variable {key:?}"
            )));
        }
    }
    for input in &spec.inputs {
        relative(&input.path, "input")?;
    }
    for output in &spec.outputs {
        relative(output, "output")?;
    }
    if let Some(cwd) = &spec.cwd {
        relative(cwd, "cwd")?;
    }
    Ok(())
}

/// `hg-<task id>-<random>`, with the id cut to 64 safe characters: the id comes from the network
/// and must not steer the path (`/`, `..`).
pub(crate) fn work_dir_name(task_id: &str) -> String {
    if is_safe_id(task_id) {
        return format!("hg-{task_id}");
    }
    let safe: String = task_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    format!("hg-{safe}-{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        assert_eq!(
            relative("a/./b.c", "input").ok(),
            Some(PathBuf::from("a/b.c"))
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", ".", "a\0b"] {
            let err = relative(bad, "input").expect_err(bad);
            assert!(matches!(err, ExecError::InvalidSpec(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn work_dir_name_ignores_hostile_ids() {
        let name = work_dir_name("../../etc/x");
        assert!(name.starts_with("hg-etcx-"), "{name}");
        assert_eq!(std::path::Path::new(&name).components().count(), 1);
        assert_eq!(work_dir_name("safe-id_1"), "hg-safe-id_1");
        assert_ne!(work_dir_name("un/safe"), work_dir_name("un/safe"));
        assert!(work_dir_name(&"a".repeat(500)).len() < 110);
    }
}
