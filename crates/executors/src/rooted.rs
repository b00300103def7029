//! Rooted tasks (Linux): a task of a [`crate::NativeExecutor::with_root`] executor runs with its
//! work directory's `root/` subdirectory as `/`, in a private mount namespace where the
//! configured host paths (the toolchain's directories, the system headers, `/dev/null`) are
//! bind-mounted at their own paths. Files the task's author materialised at `root/<absolute
//! path>` then appear at `<absolute path>`: a compiler run there reads them at the paths the
//! client read them at, so the command needs no rewriting (clang's DWARF 5 line table, with an
//! MD5 of every file, comes out as on the client).
//!
//! The mounts are made in the forked child, in a mount namespace of its own (inside the sandbox's
//! user namespace when it has one), so nothing is mounted on the host and nothing needs undoing;
//! the sandbox's Landlock domain is entered after them and still decides what may be read: the
//! bind mounts share their directories' inodes with the host, so the read-only rules cover them.
//!
//! `unsafe` is allowed in this module only for the system calls made between `fork` and `exec`.
#![allow(unsafe_code)]

use hybridgrid_core::ExecError;
use nix::libc;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The subdirectory of a rooted task's work directory that becomes its `/`.
pub const ROOT_DIR: &str = "root";

/// Everything a rooted child needs, prepared in the parent (the child only makes system calls).
#[derive(Debug)]
pub(crate) struct PreparedRoot {
    root: CString,
    /// (host path, path inside the work directory's root, read-only) to bind, in order.
    binds: Vec<(CString, CString, bool)>,
    /// The working directory inside the root.
    cwd: CString,
}

fn c_path(p: &Path) -> Result<CString, ExecError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ExecError::InvalidSpec(format!("path {} holds a NUL byte", p.display())))
}

fn work_dir_error(path: &Path) -> impl Fn(io::Error) -> ExecError + '_ {
    move |source| ExecError::WorkDir {
        path: path.display().to_string(),
        source,
    }
}

/// `binds` without duplicates, relative or missing paths, and paths beneath another kept one
/// (the outer bind already shows them).
fn outermost(binds: &[PathBuf]) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = Vec::new();
    let mut sorted: Vec<&PathBuf> = binds
        .iter()
        .filter(|p| p.is_absolute() && !p.components().any(|c| c == Component::ParentDir))
        .collect();
    sorted.sort_by_key(|p| p.components().count());
    for p in sorted {
        if p.symlink_metadata().is_ok() && !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p.clone());
        }
    }
    kept
}

impl PreparedRoot {
    /// Lays out `work_dir/root` for `binds` (a directory or file to mount on for each host path;
    /// a host symlink such as `/lib -> usr/lib` is recreated as that symlink) and the task's
    /// working directory `run_dir`, which must lie beneath `work_dir/root`.
    pub(crate) async fn prepare(
        binds: &[PathBuf],
        work_dir: &Path,
        run_dir: &Path,
    ) -> Result<PreparedRoot, ExecError> {
        let root = work_dir.join(ROOT_DIR);
        let inside = run_dir.strip_prefix(&root).map_err(|_| {
            ExecError::InvalidSpec(format!(
                "a rooted task runs beneath {ROOT_DIR}/ (its cwd is {})",
                run_dir.display()
            ))
        })?;
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(work_dir_error(&root))?;
        let mut pairs = Vec::new();
        for host in outermost(binds) {
            let rel = host.strip_prefix("/").unwrap_or(&host);
            let target = root.join(rel);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(work_dir_error(parent))?;
            }
            let meta = tokio::fs::symlink_metadata(&host)
                .await
                .map_err(work_dir_error(&host))?;
            if meta.file_type().is_symlink() {
                let to = tokio::fs::read_link(&host)
                    .await
                    .map_err(work_dir_error(&host))?;
                match tokio::fs::symlink(&to, &target).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(work_dir_error(&target)(e)),
                }
                continue;
            }
            if meta.is_dir() {
                tokio::fs::create_dir_all(&target)
                    .await
                    .map_err(work_dir_error(&target))?;
            } else {
                tokio::fs::write(&target, b"")
                    .await
                    .map_err(work_dir_error(&target))?;
            }
            pairs.push((c_path(&host)?, c_path(&target)?, meta.is_dir()));
        }
        Ok(PreparedRoot {
            root: c_path(&root)?,
            binds: pairs,
            cwd: c_path(&Path::new("/").join(inside))?,
        })
    }

    /// Mounts the binds, enters the root and its working directory. Runs in the forked child,
    /// already in a mount namespace of its own: system calls only, no allocation, no locks.
    pub(crate) fn enter(&self) -> io::Result<()> {
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: valid C strings or null pointers, as mount(2) documents for each use.
        unsafe {
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (host, target, read_only) in &self.binds {
                check(libc::mount(
                    host.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                // Read-only, whatever the sandbox allows: the mount point lies beneath the work
                // directory, so a Landlock walk up from a bound file reaches the work
                // directory's (read-write) rule.
                if *read_only {
                    make_read_only(target)?;
                }
            }
            check(libc::chroot(self.root.as_ptr()))?;
            check(libc::chdir(self.cwd.as_ptr()))
        }
    }

    /// [`PreparedRoot::enter`] for a task without a sandbox: a mount namespace first (this needs
    /// root, or the spawn fails).
    pub(crate) fn enter_alone(&self) -> io::Result<()> {
        // SAFETY: unshare takes flags only.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.enter()
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Makes the mount at `target` and every mount beneath it read-only (`mount_setattr`, Linux 5.12:
/// on an older kernel the spawn fails, and a worker's start-up check then offers no rooted
/// compiles).
fn make_read_only(target: &CString) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid C string and attribute struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_missing_binds_are_dropped() {
        let kept = outermost(&[
            "/usr/lib/x86_64-linux-gnu".into(),
            "/usr/lib".into(),
            "/usr/lib".into(),
            "relative".into(),
            "/no/such/dir/hybridgrid".into(),
            "/usr/../etc".into(),
        ]);
        assert_eq!(kept, vec![PathBuf::from("/usr/lib")]);
    }
}
