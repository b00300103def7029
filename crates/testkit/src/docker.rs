//! Small Docker images for tests, built on this machine (no registry is ever contacted).
//!
//! An image is a root filesystem made on the fly and loaded with `docker import`:
//! - `/usr/bin/busybox` (Debian's statically linked `busybox-static`, so no library is needed), a
//!   symlink `/usr/bin/<applet>` for each of its applets, and `/bin` → `usr/bin` (merged /usr,
//!   as in Debian): `sh`, `cat`, `sleep`, `ls`, `ip`, `head`,
//!   `tr`, `grep`, `sed`, `awk`, `printf`, ... (`busybox --list` says which);
//! - `/etc/passwd` and `/etc/group` with `root` (0) and `nobody` (65534), an empty `/root`, and a
//!   world-writable `/tmp`;
//! - `ENV PATH=/bin:/usr/bin` and `CMD ["/bin/sh"]`;
//! - for [`ensure_image_with`], the given extra files (agent scripts, fixtures);
//! - for [`ensure_image_with_host`], host files and directories at their own paths plus the
//!   shared libraries their executables load (`ldd`), e.g. a Debian cross toolchain.
//!
//! The tag is `hybridgrid-test-<name>:<content hash>`, so an image is built once per machine and
//! content; later calls (from any process) only check that it exists. Needs the `docker` CLI and
//! `/bin/busybox` from Debian's `busybox-static` (`scripts/ci-deps/docker.sh` installs it).
//!
//! ```no_run
//! let image = hybridgrid_testkit::docker::ensure_image_with(
//!     "agent",
//!     &[("/agent.sh", b"#!/bin/sh\necho \"{\\\"got\\\": $AGENT_INPUT}\"\n", 0o755)],
//! )
//! .expect("test image");
//! // spec.image = Some(image); spec.command = vec!["/agent.sh".into()];
//! # let _ = image;
//! ```

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the static busybox comes from.
const BUSYBOX: &str = "/bin/busybox";
/// Bump when the image layout changes, so stale images are not reused.
const LAYOUT_VERSION: &[u8] = b"hybridgrid-test-image-v2";

/// The reference of the plain test image `hybridgrid-test-<name>:<hash>` (busybox only), building
/// it if this machine does not have it yet.
pub fn ensure_test_image(name: &str) -> io::Result<String> {
    ensure_image_with(name, &[])
}

/// Like [`ensure_test_image`], with extra files: `(absolute path in the image, contents, mode)`,
/// e.g. `("/agent.sh", script, 0o755)`. Parent directories are created.
pub fn ensure_image_with(name: &str, files: &[(&str, &[u8], u32)]) -> io::Result<String> {
    ensure_image_with_host(name, &[], files)
}

/// Like [`ensure_image_with`], plus files and directories copied from this host at the same
/// paths (`/usr/bin/aarch64-linux-gnu-gcc`, `/usr/lib/gcc-cross`, ...), with the shared libraries
/// that `ldd` says their executables need, so host programs run inside the image. A host file
/// replaces a busybox applet of the same name on disk, but busybox `sh` still runs its own applet
/// for a bare name: call host programs by absolute path. The tag covers the host files' sizes and
/// modification times, so an upgraded package gives a new image.
pub fn ensure_image_with_host(
    name: &str,
    host_paths: &[&str],
    files: &[(&str, &[u8], u32)],
) -> io::Result<String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(format!(
            "test image name {name:?} must be 1 to 64 of [a-z0-9._-]"
        )));
    }
    for (path, _, _) in files {
        check_image_path(path)?;
    }
    let host = host_files(host_paths)?;
    let busybox = std::fs::read(BUSYBOX).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot read {BUSYBOX} ({e}): install Debian's busybox-static \
                 (scripts/ci-deps/docker.sh) to build test images"
            ),
        )
    })?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(LAYOUT_VERSION);
    hasher.update(&busybox);
    for (path, contents, mode) in files {
        hasher.update(&(path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update(&(contents.len() as u64).to_le_bytes());
        hasher.update(contents);
        hasher.update(&mode.to_le_bytes());
    }
    for (path, meta) in &host.entries {
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update(&meta.len().to_le_bytes());
        hasher.update(&meta.mtime().to_le_bytes());
    }
    for lib in &host.libraries {
        hasher.update(lib.as_os_str().as_encoded_bytes());
    }
    let tag = format!(
        "hybridgrid-test-{name}:{}",
        &hasher.finalize().to_hex()[..16]
    );
    // One build at a time on this machine (tests run as parallel processes).
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("hybridgrid-test-images.lock"))?;
    lock.lock()?;
    if image_exists(&tag)? {
        return Ok(tag);
    }
    let root = std::env::temp_dir().join(format!(
        "hybridgrid-rootfs-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let built = make_rootfs(&root, &busybox, files)
        .and_then(|()| copy_host(&root, host_paths, &host.libraries))
        .and_then(|()| import(&root, &tag));
    let _ = std::fs::remove_dir_all(&root);
    built?;
    Ok(tag)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_image_path(path: &str) -> io::Result<()> {
    let p = Path::new(path);
    let ok = p.is_absolute()
        && p.components().skip(1).count() > 0
        && p.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "test image file path {path:?} must be absolute, without `..`"
        )))
    }
}

fn image_exists(tag: &str) -> io::Result<bool> {
    let status = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run the docker CLI ({e}): is docker installed?"),
            )
        })?;
    Ok(status.success())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn make_rootfs(root: &Path, busybox: &[u8], files: &[(&str, &[u8], u32)]) -> io::Result<()> {
    // Merged /usr as Debian has it (`/bin` → `usr/bin`): a relocatable program under /usr/bin
    // (gcc finds `cc1` relative to its own directory) sees /usr/lib beside it.
    let bin = root.join("usr/bin");
    write_file(&bin.join("busybox"), busybox, 0o755)?;
    let list = Command::new(BUSYBOX).arg("--list").output()?;
    if !list.status.success() {
        return Err(io::Error::other(format!("`{BUSYBOX} --list` failed")));
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet.contains('/') || applet == "busybox" {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin"))?;
    write_file(
        &root.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    write_file(
        &root.join("etc/group"),
        b"root:x:0:\nnogroup:x:65534:\n",
        0o644,
    )?;
    std::fs::create_dir_all(root.join("root"))?;
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    for (path, contents, mode) in files {
        write_file(&root.join(path.trim_start_matches('/')), contents, *mode)?;
    }
    Ok(())
}

/// The host entries to copy (every file under the given paths) and the libraries they need.
struct HostFiles {
    entries: Vec<(PathBuf, std::fs::Metadata)>,
    libraries: BTreeSet<PathBuf>,
}

fn host_files(paths: &[&str]) -> io::Result<HostFiles> {
    let mut host = HostFiles {
        entries: Vec::new(),
        libraries: BTreeSet::new(),
    };
    for path in paths {
        check_image_path(path)?;
        walk(Path::new(path), &mut host.entries).map_err(|e| {
            io::Error::new(e.kind(), format!("host path {path} for a test image: {e}"))
        })?;
    }
    for (path, meta) in &host.entries {
        if meta.is_file() && meta.mode() & 0o111 != 0 && is_elf(path) {
            host.libraries.extend(libraries(path)?);
        }
    }
    Ok(host)
}

fn walk(path: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let is_dir = meta.is_dir();
    out.push((path.to_owned(), meta));
    if is_dir {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        children.sort();
        for child in children {
            walk(&child, out)?;
        }
    }
    Ok(())
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The absolute library paths `ldd` lists for `exe` (none for a static binary).
fn libraries(exe: &Path) -> io::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(exe).output()?;
    // `ldd` fails for static binaries ("not a dynamic executable"): nothing to add.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let target = line.split("=>").nth(1).unwrap_or(line).trim();
            let path = target.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copies the host paths (as they are, symlinks kept) and the libraries (dereferenced) into
/// `root` at the same paths.
fn copy_host(root: &Path, paths: &[&str], libraries: &BTreeSet<PathBuf>) -> io::Result<()> {
    let copy = |args: &[&str], what: &Path| -> io::Result<()> {
        // From `/`: coreutils 9.1's `cp -a --parents` copies the attributes of the parent
        // directories it creates through their path relative to the working directory.
        let status = Command::new("cp")
            .current_dir("/")
            .args(args)
            .args(["--parents", "--remove-destination"])
            .arg(what)
            .arg(root)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "copying {} into the test image failed ({status})",
                what.display()
            )))
        }
    };
    for path in paths {
        copy(&["-a"], Path::new(path))?;
    }
    for lib in libraries {
        copy(&["-L"], lib)?;
    }
    Ok(())
}

/// `tar -C root -c . | docker import - tag`.
fn import(root: &Path, tag: &str) -> io::Result<()> {
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(root)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()?;
    let tar_out = tar
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("tar has no stdout"))?;
    let import = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/bin:/usr/bin",
            "--change",
            "CMD [\"/bin/sh\"]",
            "-",
            tag,
        ])
        .stdin(tar_out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let tar_status = tar.wait()?;
    if !tar_status.success() {
        return Err(io::Error::other(format!(
            "tar of the test rootfs {} failed ({tar_status})",
            root.display()
        )));
    }
    if !import.status.success() {
        let mut msg = format!("docker import of test image {tag} failed: ");
        msg.push_str(String::from_utf8_lossy(&import.stderr).trim());
        return Err(io::Error::other(msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_paths_are_refused() {
        for bad in ["", "Upper", "a/b", "a:b"] {
            assert!(ensure_test_image(bad).is_err(), "{bad:?}");
        }
        for bad in ["relative", "/", "/a/../b"] {
            assert!(check_image_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_image_path("/agent/run.sh").is_ok());
    }
}
