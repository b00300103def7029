//! [`Sandbox`]: confines a [`crate::NativeExecutor`] task (Linux).
//!
//! Applied in the child between `fork` and `exec`, in this order:
//! 1. resource limits: `RLIMIT_AS` (memory), `RLIMIT_FSIZE` (largest file written: a `.skip`
//!    or `.incbin` that grows the object dies with `SIGXFSZ`), `RLIMIT_CPU`, no core dumps;
//! 2. new user and network namespaces: no network interface but a down loopback, and no
//!    capability over the host (root is mapped to `nobody` inside);
//! 3. `no_new_privs` and a Landlock domain: read and execute beneath the configured read-only
//!    directories (the toolchain's), read and write beneath the task's work directory and
//!    `/dev/null`, nothing else — not `/etc`, not `/proc` (so neither the worker's config nor
//!    `/proc/<worker pid>/environ`), not `/dev/zero`. TCP bind/connect are denied too (ABI 4),
//!    and signals and abstract sockets to processes outside the domain (ABI 6).
//!
//! [`Sandbox::probe`] checks that the kernel has Landlock; whether namespaces can be created
//! shows when a task is spawned (the spawn fails), so callers run one task at start.
//!
//! `unsafe` is allowed in this module only: Landlock has no libc wrapper, and the child side
//! must make raw system calls between `fork` and `exec`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;

/// Limits and readable directories of a [`Sandbox`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Directories the task may read and execute beneath (the toolchain's: its prefix, the
    /// system library directories). Missing ones are skipped.
    pub read_only: Vec<PathBuf>,
    /// Address-space bound in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Largest file the task may write, in bytes (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// CPU time in seconds (`RLIMIT_CPU`); the wall-clock deadline still applies.
    pub cpu_seconds: u64,
}

/// Why a sandbox cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel has no Landlock (too old, or not in the `lsm=` list).
    #[error("the kernel offers no Landlock (landlock_create_ruleset: {0})")]
    NoLandlock(io::Error),
    /// A ruleset could not be built.
    #[error("building the Landlock ruleset for {path}: {source}")]
    Ruleset {
        /// The path being added (or `ruleset`).
        path: String,
        /// The cause.
        source: io::Error,
    },
}

/// A checked sandbox policy (see the module docs).
#[derive(Clone, Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    abi: i32,
}

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_TRUNCATE: u64 = 1 << 14;
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

impl Sandbox {
    /// Checks that this kernel can enforce the policy (Landlock present).
    pub fn probe(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        // SAFETY: the documented version query: no pointer is read.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        if abi < 1 {
            return Err(SandboxError::NoLandlock(io::Error::last_os_error()));
        }
        Ok(Sandbox {
            config,
            abi: i32::try_from(abi).unwrap_or(i32::MAX),
        })
    }

    /// The policy's limits and directories.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// One line naming what is enforced, for logs and health reports.
    pub fn describe(&self) -> String {
        format!(
            "landlock ABI {}, user+network namespaces, rlimits (memory {} MiB, file size {} MiB, cpu {} s)",
            self.abi,
            self.config.memory_bytes >> 20,
            self.config.file_size_bytes >> 20,
            self.config.cpu_seconds
        )
    }

    fn handled_fs(&self) -> u64 {
        let mut fs = (1u64 << 13) - 1;
        if self.abi >= 2 {
            fs |= 1 << 13; // REFER
        }
        if self.abi >= 3 {
            fs |= FS_TRUNCATE;
        }
        if self.abi >= 5 {
            fs |= 1 << 15; // IOCTL_DEV
        }
        fs
    }

    /// Everything the child needs, prepared in the parent (the child only makes system calls).
    pub(crate) fn prepare(&self, work_dir: &Path) -> Result<Prepared, SandboxError> {
        let fs = self.handled_fs();
        let attr = RulesetAttr {
            handled_access_fs: fs,
            handled_access_net: if self.abi >= 4 {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if self.abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        let size = match self.abi {
            1..=3 => 8,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` is a valid, initialised struct of at least `size` bytes.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(SandboxError::Ruleset {
                path: "ruleset".into(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
        for dir in &self.config.read_only {
            if dir.exists() {
                add_rule(&ruleset, dir, read & fs)?;
            }
        }
        add_rule(&ruleset, work_dir, fs)?;
        add_rule(
            &ruleset,
            Path::new("/dev/null"),
            (FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE) & fs,
        )?;
        // SAFETY: plain getters.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // Root is `nobody` inside: no capability over the host's root-owned files.
        let inside = |id: u32| if id == 0 { 65534 } else { id };
        Ok(Prepared {
            ruleset,
            uid_map: format!("{} {uid} 1\n", inside(uid)).into_bytes(),
            gid_map: format!("{} {gid} 1\n", inside(gid)).into_bytes(),
            limits: [
                (libc::RLIMIT_AS, self.config.memory_bytes),
                (libc::RLIMIT_FSIZE, self.config.file_size_bytes),
                (libc::RLIMIT_CPU, self.config.cpu_seconds.max(1)),
                (libc::RLIMIT_CORE, 0),
            ],
            paths: [
                c"/proc/self/setgroups".into(),
                c"/proc/self/uid_map".into(),
                c"/proc/self/gid_map".into(),
            ],
        })
    }
}

fn add_rule(ruleset: &OwnedFd, path: &Path, access: u64) -> Result<(), SandboxError> {
    let err = |source| SandboxError::Ruleset {
        path: path.display().to_string(),
        source,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: `c` is a valid C string; O_PATH opens without reading.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor owned here.
    let parent = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: parent.as_raw_fd(),
    };
    // SAFETY: valid descriptors and a valid attribute struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if r < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

/// A sandbox ready to enter, for one task.
pub(crate) struct Prepared {
    ruleset: OwnedFd,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    limits: [(libc::__rlimit_resource_t, u64); 4],
    paths: [CString; 3],
}

impl Prepared {
    /// Enters the sandbox, and with `root` a private mount namespace entered through
    /// [`crate::rooted::PreparedRoot::enter`] before the Landlock domain (which forbids mounts).
    /// Runs in the forked child before `exec`: system calls only, no allocation, no locks.
    pub(crate) fn enter(&self, root: Option<&crate::rooted::PreparedRoot>) -> io::Result<()> {
        let check = |r: libc::c_long| {
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        for (resource, value) in self.limits {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: a valid struct.
            check(unsafe { libc::setrlimit(resource, &lim) }.into())?;
        }
        let mount_ns = if root.is_some() { libc::CLONE_NEWNS } else { 0 };
        // SAFETY: unshare takes flags only.
        let userns =
            unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET | mount_ns) } == 0;
        if userns {
            write_file(&self.paths[0], b"deny\n")?;
            write_file(&self.paths[1], &self.uid_map)?;
            write_file(&self.paths[2], &self.gid_map)?;
        } else {
            // Without user namespaces (nested containers), a privileged worker still gets a
            // network namespace; an unprivileged one fails here and the spawn fails.
            // SAFETY: unshare takes flags only.
            check(unsafe { libc::unshare(libc::CLONE_NEWNET | mount_ns) }.into())?;
        }
        if let Some(root) = root {
            root.enter()?;
        }
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
        // SAFETY: a valid ruleset descriptor.
        check(unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            )
        })
    }
}

fn write_file(path: &CString, data: &[u8]) -> io::Result<()> {
    // SAFETY: a valid C string and buffer; the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 || n as usize != data.len() {
            return Err(err);
        }
    }
    Ok(())
}
