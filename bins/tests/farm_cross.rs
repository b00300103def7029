//! End-to-end cross-compiling, for arm64 and armv7: a worker offers Debian's cross compiler
//! (`aarch64-linux-gnu-gcc`, `arm-linux-gnueabihf-gcc`) from inside a Docker image (built here
//! from the host's cross toolchain with `docker import`, never pulled), a second worker has only
//! the host's gcc. `hgbuild` builds a small multi-file C program for the target; every object and
//! depfile must equal a local cross build byte for byte, every cross compile must land on the
//! worker with that exact toolchain, and the linked program must run under qemu user emulation
//! (`qemu-aarch64-static`, `qemu-arm-static`). Needs `gcc-aarch64-linux-gnu`,
//! `libc6-dev-arm64-cross`, `gcc-arm-linux-gnueabihf`, `libc6-dev-armhf-cross`,
//! `qemu-user-static` (scripts/ci-deps/cross.sh) and the Docker engine.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

const CFLAGS: &str = "-O2 -g -Wall -MD";

/// One cross target: its Debian toolchain and how to check what it built.
struct Cross {
    /// The platform name users give (`hgbuild --target`), and the image's name.
    platform: &'static str,
    /// The cross driver, as installed by `package`.
    gcc: &'static str,
    /// The Debian package of the cross compiler.
    package: &'static str,
    /// A header of the target's C library and its Debian package.
    libc_header: (&'static str, &'static str),
    /// The files a compile (`-c`) needs: driver, `cc1`, assembler, and the link the driver
    /// finds `as` through. Their shared libraries come along (`ldd`).
    files: &'static [&'static str],
    /// The emulator that runs the target's programs.
    qemu: &'static str,
    /// ELF `e_machine` of the target (183 = AArch64, 40 = ARM).
    elf_machine: u16,
    /// What the test program prints for its architecture.
    arch: &'static str,
}

const ARM64: Cross = Cross {
    platform: "linux-arm64",
    gcc: "/usr/bin/aarch64-linux-gnu-gcc",
    package: "gcc-aarch64-linux-gnu",
    libc_header: (
        "/usr/aarch64-linux-gnu/include/stdio.h",
        "libc6-dev-arm64-cross",
    ),
    files: &[
        "/usr/bin/aarch64-linux-gnu-gcc",
        "/usr/bin/aarch64-linux-gnu-gcc-12",
        "/usr/bin/aarch64-linux-gnu-as",
        "/usr/lib/gcc-cross/aarch64-linux-gnu/12/cc1",
        "/usr/aarch64-linux-gnu/bin/as",
    ],
    qemu: "/usr/bin/qemu-aarch64-static",
    elf_machine: 183,
    arch: "aarch64",
};

const ARMV7: Cross = Cross {
    platform: "linux-armv7",
    gcc: "/usr/bin/arm-linux-gnueabihf-gcc",
    package: "gcc-arm-linux-gnueabihf",
    libc_header: (
        "/usr/arm-linux-gnueabihf/include/stdio.h",
        "libc6-dev-armhf-cross",
    ),
    files: &[
        "/usr/bin/arm-linux-gnueabihf-gcc",
        "/usr/bin/arm-linux-gnueabihf-gcc-12",
        "/usr/bin/arm-linux-gnueabihf-as",
        "/usr/lib/gcc-cross/arm-linux-gnueabihf/12/cc1",
        "/usr/arm-linux-gnueabihf/bin/as",
    ],
    qemu: "/usr/bin/qemu-arm-static",
    elf_machine: 40,
    arch: "armv7",
};

impl Cross {
    /// The driver's name, as a Makefile's `CC=` gives it.
    fn gcc_name(&self) -> &'static str {
        self.gcc.rsplit('/').next().unwrap_or(self.gcc)
    }

    /// The locally built image holding this toolchain.
    fn image(&self) -> String {
        require(self.gcc, self.package);
        hybridgrid_testkit::docker::ensure_image_with_host(
            &format!("cross-{}", self.platform.trim_start_matches("linux-")),
            self.files,
            &[],
        )
        .unwrap_or_else(|e| {
            panic!(
                "build the {} cross-compiler image from the host's toolchain: {e}",
                self.platform
            )
        })
    }
}

const SOURCES: &[(&str, &str)] = &[
    (
        "main.c",
        "#include <stdio.h>\n#include \"calc.h\"\n\nint main(void) {\n    printf(\"sum=%ld fib=%ld arch=%s\\n\", sum_to(10), fib(20), arch_name());\n    return 0;\n}\n",
    ),
    (
        "calc.h",
        "#ifndef CALC_H\n#define CALC_H\nlong sum_to(int n);\nlong fib(int n);\nconst char *arch_name(void);\n#endif\n",
    ),
    (
        "sum.c",
        "#include \"calc.h\"\n\nlong sum_to(int n) {\n    long s = 0;\n    for (int i = 1; i <= n; i++) s += i;\n    return s;\n}\n",
    ),
    (
        "fib.c",
        "#include \"calc.h\"\n\nlong fib(int n) {\n    long a = 0, b = 1;\n    while (n-- > 0) { long t = a + b; a = b; b = t; }\n    return a;\n}\n",
    ),
    (
        "arch.c",
        "#include \"calc.h\"\n\nconst char *arch_name(void) {\n#if defined(__aarch64__)\n    return \"aarch64\";\n#elif defined(__ARM_ARCH_7A__)\n    return \"armv7\";\n#else\n    return \"other\";\n#endif\n}\n",
    ),
];

fn stems() -> Vec<String> {
    SOURCES
        .iter()
        .filter_map(|(f, _)| f.strip_suffix(".c"))
        .map(str::to_owned)
        .collect()
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} (scripts/ci-deps/cross.sh)"
    );
}

/// Writes `hg-worker`'s config file: host compilers `compilers`, and image toolchains.
fn worker_config(dir: &Path, id: &str, compilers: &[&str], images: &[(&str, &str)]) -> String {
    let mut yaml = format!("worker:\n  compilers: [{}]\n", compilers.join(", "));
    if !images.is_empty() {
        yaml.push_str("  docker:\n    toolchains:\n");
        for (image, compiler) in images {
            yaml.push_str(&format!(
                "      - image: \"{image}\"\n        compiler: {compiler}\n"
            ));
        }
    }
    let path = dir.join(format!("{id}.yaml"));
    std::fs::write(&path, yaml).expect("write worker config");
    path.display().to_string()
}

fn done_by(stats: &serde_json::Value, id: &str) -> u64 {
    stats["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["id"] == id))
        .and_then(|w| w["done"].as_u64())
        .unwrap_or_else(|| panic!("worker {id} not in stats: {stats}"))
}

/// ELF machine of `path` (183 = AArch64, 40 = ARM, 62 = x86-64).
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 20 && bytes[..4] == *b"\x7fELF",
        "{} is not ELF",
        path.display()
    );
    u16::from_le_bytes([bytes[18], bytes[19]])
}

#[test]
fn arm64_program_built_through_the_farm_matches_a_local_cross_build_and_runs_under_qemu() {
    program_through_the_farm(&ARM64);
}

#[test]
fn armv7_program_built_through_the_farm_matches_a_local_cross_build_and_runs_under_qemu() {
    program_through_the_farm(&ARMV7);
}

/// Builds the test program for `c` locally and through the farm (a worker with `c`'s image
/// toolchain, one with the host's gcc only), compares the outputs, and runs the farm's program.
fn program_through_the_farm(c: &Cross) {
    require(c.qemu, "qemu-user-static");
    require(c.libc_header.0, c.libc_header.1);
    let image = c.image();
    let tmp = TempDir::new(&format!("cross-{}", c.platform));
    let dir = tmp.path();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    for (name, text) in SOURCES {
        std::fs::write(src.join(name), text).expect("write source");
    }
    let stems = stems();

    // The reference: a plain local cross build, moved aside; the farm build then runs in the
    // same directory (with -g an object records the directory it was compiled in).
    let build = dir.join("build");
    let plain = dir.join("build.plain");
    write_makefile(&build, &src, &stems, CFLAGS);
    let (code, _, err) = run(Command::new("make")
        .args(["-s", "-C"])
        .arg(&build)
        .arg(format!("CC={}", c.gcc)));
    assert_eq!(code, 0, "local cross build failed: {err}");
    std::fs::rename(&build, &plain).expect("move the local build aside");
    write_makefile(&build, &src, &stems, CFLAGS);

    let pid = std::process::id();
    let (arm_id, host_id) = (format!("cross-{pid}"), format!("host-{pid}"));
    let coord = Daemon::coordinator(dir, &[]);
    let arm_cfg = worker_config(dir, &arm_id, &[], &[(image.as_str(), c.gcc)]);
    let host_cfg = worker_config(dir, &host_id, &["gcc"], &[]);
    let arm = Daemon::worker_with_env(
        dir,
        &arm_id,
        "127.0.0.2",
        &coord.grpc,
        &[("HG_CONFIG", arm_cfg.as_str())],
    );
    let _host = Daemon::worker_with_env(
        dir,
        &host_id,
        "127.0.0.3",
        &coord.grpc,
        &[("HG_CONFIG", host_cfg.as_str())],
    );
    wait_workers_up(&coord.http, 2);
    let log = arm.log_text();
    assert!(
        log.contains("toolchain found")
            && log.contains(c.gcc_name().trim_end_matches("-gcc"))
            && log.contains(&format!("platform=\"{}\"", c.platform)),
        "the cross worker did not advertise its image toolchain:\n{log}"
    );

    // `make CC=<triple>-gcc` under hgbuild: the cross compiler name is masqueraded.
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .args(["make", "-s", "-j2", "-C"])
        .arg(&build)
        .arg(format!("CC={}", c.gcc_name())));
    assert_eq!(code, 0, "farm cross build failed: {err}");
    assert_farm_served(&err, stems.len());
    assert_same_outputs(&plain, &build, &stems);

    let s = stats(&coord.http);
    assert_eq!(done_by(&s, &arm_id), stems.len() as u64, "{s}");
    assert_eq!(
        done_by(&s, &host_id),
        0,
        "the worker without the {} toolchain got its work: {s}",
        c.platform
    );

    // Link the farm's objects and run the program on an emulated CPU of the target.
    let prog = build.join("calc");
    let objects: Vec<_> = stems.iter().map(|s| build.join(format!("{s}.o"))).collect();
    let (code, _, err) = run(Command::new(c.gcc)
        .arg("-static")
        .arg("-o")
        .arg(&prog)
        .args(&objects));
    assert_eq!(code, 0, "link failed: {err}");
    assert_eq!(
        elf_machine(&prog),
        c.elf_machine,
        "not a {} executable",
        c.platform
    );
    let (code, out, err) = run(Command::new(c.qemu).arg(&prog));
    assert_eq!(code, 0, "qemu run failed: {err}");
    assert_eq!(out, format!("sum=55 fib=6765 arch={}\n", c.arch));

    // The host worker is eligible for host compiles: it was passed over only for the target.
    let native = dir.join("native.c");
    std::fs::write(&native, "int native_answer(void) { return 42; }\n").expect("write");
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .args(["gcc", "-O2", "-c"])
        .arg(&native)
        .arg("-o")
        .arg(dir.join("native.o")));
    assert_eq!(code, 0, "host compile failed: {err}");
    let s = stats(&coord.http);
    assert_eq!(done_by(&s, &host_id), 1, "{s}");
    assert_eq!(done_by(&s, &arm_id), stems.len() as u64, "{s}");
    assert_eq!(elf_machine(&dir.join("native.o")), 62);

    // Every compile ran in a container of its own: none is left, nor any task directory.
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=hybridgrid.owner=hg-worker-{arm_id}"))
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "containers left behind by the cross worker"
    );
    let task_dirs = dir.join(format!("work-{arm_id}")).join("hg-docker");
    let left: Vec<_> = std::fs::read_dir(&task_dirs)
        .unwrap_or_else(|e| panic!("{} (where the tasks ran): {e}", task_dirs.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "task directories left: {left:?}");
}

#[test]
fn hgbuild_target_flag_picks_the_cross_compiler() {
    let image = ARM64.image();
    let tmp = TempDir::new("cross-target");
    let dir = tmp.path();
    let pid = std::process::id();
    let arm_id = format!("arm-t-{pid}");
    let coord = Daemon::coordinator(dir, &[]);
    let cfg = worker_config(dir, &arm_id, &[], &[(image.as_str(), ARM64.gcc)]);
    let _arm = Daemon::worker_with_env(
        dir,
        &arm_id,
        "127.0.0.2",
        &coord.grpc,
        &[("HG_CONFIG", cfg.as_str())],
    );
    wait_workers_up(&coord.http, 1);
    let file = dir.join("one.c");
    std::fs::write(&file, "long twice(long x) { return 2 * x; }\n").expect("write");
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .args(["--target", "linux-arm64", "cc", "-O2", "-g", "-c"])
        .arg(&file)
        .arg("-o")
        .arg(dir.join("farm.o"))
        .current_dir(dir));
    assert_eq!(code, 0, "hgbuild --target failed: {err}");
    let (code, _, err) = run(Command::new(ARM64.gcc)
        .args(["-O2", "-g", "-c"])
        .arg(&file)
        .arg("-o")
        .arg(dir.join("local.o"))
        .current_dir(dir));
    assert_eq!(code, 0, "local cross compile failed: {err}");
    assert_eq!(elf_machine(&dir.join("farm.o")), 183);
    assert!(
        std::fs::read(dir.join("farm.o")).ok() == std::fs::read(dir.join("local.o")).ok(),
        "the object compiled through the farm differs from the local cross compile"
    );
    assert_eq!(done_by(&stats(&coord.http), &arm_id), 1);

    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .args(["--target", "vax-vms", "cc", "-c"])
        .arg(&file));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("vax-vms") && err.contains("linux-arm64"),
        "an unknown platform is named with the known ones: {err}"
    );
}

/// A worker whose image is missing, or whose engine is unreachable, refuses to start and says
/// what to do.
#[test]
fn missing_image_and_unreachable_engine_stop_the_worker_with_the_fix() {
    let tmp = TempDir::new("cross-errors");
    let dir = tmp.path();
    let pid = std::process::id();
    let start = |id: &str, yaml: String| {
        let path = dir.join(format!("{id}.yaml"));
        std::fs::write(&path, yaml).expect("write config");
        let work = dir.join(format!("work-{id}"));
        std::fs::create_dir_all(&work).expect("work dir");
        run(Command::new(WORKER)
            .args(["serve", "--id", id, "--grpc-addr", "127.0.0.1:0"])
            .args(["--http-addr", "127.0.0.1:0"])
            .env("HG_CONFIG", &path)
            .env("HG_WORKER_WORK_DIR", &work)
            .env("NO_COLOR", "1"))
    };
    let absent = format!("hybridgrid-test-absent-{pid}:1");
    let (code, _, err) = start(
        &format!("noimg-{pid}"),
        format!(
            "worker:\n  compilers: []\n  docker:\n    toolchains:\n      - image: \"{absent}\"\n        compiler: {}\n",
            ARM64.gcc
        ),
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains(&absent) && err.contains("never pulled") && err.contains("docker import"),
        "the missing image is named with how to build it: {err}"
    );
    let (code, _, err) = start(
        &format!("noengine-{pid}"),
        format!(
            "worker:\n  compilers: []\n  docker:\n    socket: unix://{}/no-docker.sock\n    toolchains:\n      - image: x\n        compiler: {}\n",
            dir.display(),
            ARM64.gcc
        ),
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("Docker not available")
            && err.contains("no-docker.sock")
            && err.contains("usermod -aG docker"),
        "an unreachable engine is named with the fix: {err}"
    );
}
