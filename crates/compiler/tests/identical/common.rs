//! What every case shares: the sources, running a compiler, and the two ways to compile.

pub(crate) use hybridgrid_compiler::{CompileJob, CompilerKind, Invocation, parse_for};
pub(crate) use std::ffi::OsString;
pub(crate) use std::path::Path;
pub(crate) use std::process::Command;

pub(crate) const HEADER: &str = r#"#ifndef H_H
#define H_H
#define SQ(x) ((x) * (x))
#define LOG(fmt, ...) printf("%s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__)
static inline int twice(int a) { return SQ(a) + SQ(a + 1); }
#endif
"#;

pub(crate) const C_SRC: &str = r#"#include "h.h"
#include <stdio.h>
#include <assert.h>
#ifndef VAL
#define VAL 2
#endif
struct point { int x, y; };
int g(int x) {
    struct point p = { SQ(x), twice(x) };
    LOG("%d %d", p.x, p.y);
    assert(x != 42);
    return p.x * VAL + p.y + __LINE__;
}
const char *where(void) { return __FILE__; }
"#;

pub(crate) const CXX_SRC: &str = r#"#include "h.h"
#include <string>
#include <vector>
#include <map>
namespace {
std::map<std::string, int> table = {{"a", SQ(2)}, {"b", twice(3)}};
template <typename T> T sum(const std::vector<T>& v) { T s{}; for (auto& x : v) s += x; return s; }
}
int lookup(const std::string& k) { auto it = table.find(k); return it == table.end() ? -1 : it->second; }
double avg(const std::vector<double>& v) { return v.empty() ? 0 : sum(v) / v.size(); }
const char *file() { return __FILE__; }
"#;

pub(crate) struct Case {
    pub(crate) driver: &'static str,
    /// Files under the project root.
    pub(crate) files: Vec<(&'static str, &'static str)>,
    /// Client working directory, relative to the project root.
    pub(crate) cwd: &'static str,
    /// Arguments; `{root}` is replaced by the absolute project root.
    pub(crate) args: Vec<&'static str>,
    /// Client environment (forwarded to the worker as `CLIENT_ENV` says).
    pub(crate) env: &'static [(&'static str, &'static str)],
}

pub(crate) fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn compiler");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn stderr_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn compiler");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stderr
}

/// Diagnostics without GCC's source excerpt lines (`    5 | int x;` and `      |     ^~~`).
pub(crate) fn without_excerpts(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
            !t[digits..].trim_start().starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs the case both ways and returns the job (for further checks).
pub(crate) fn check(case: Case) -> CompileJob {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let root = base.join("client/project");
    for (name, text) in &case.files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let cwd = root.join(case.cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    for d in ["obj", "deps"] {
        std::fs::create_dir_all(cwd.join(d)).unwrap();
    }
    let root_s = root.to_str().unwrap();
    let args: Vec<OsString> = case
        .args
        .iter()
        .map(|a| OsString::from(a.replace("{root}", root_s)))
        .collect();
    // The worker directory is reached through a symlink: `PWD` keeps GCC on the path as given.
    std::fs::create_dir_all(base.join("worker-real")).unwrap();
    std::os::unix::fs::symlink(base.join("worker-real"), base.join("worker")).unwrap();
    both_ways(
        case.driver,
        &cwd,
        &args,
        &base.join("worker/job-1"),
        case.env,
    )
}

/// Compiles `args` in `cwd` plainly, then preprocessed locally and compiled remotely in
/// `worker` (created; must be empty), and asserts identical objects, depfiles and diagnostics.
pub(crate) fn both_ways(
    driver: &str,
    cwd: &Path,
    args: &[OsString],
    worker: &Path,
    env: &[(&str, &str)],
) -> CompileJob {
    let forwarded: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| hybridgrid_compiler::CLIENT_ENV.contains(k))
        .copied()
        .collect();
    let kind = CompilerKind::detect(Path::new(driver)).unwrap();
    let job = match parse_for(kind, args) {
        Invocation::Distributable(j) => j,
        Invocation::Local(r) => panic!("{args:?} ran locally: {r:?}"),
    };
    let obj = cwd.join(job.output());
    let dep = job.depfile().map(|d| cwd.join(&d.path));

    // 1. Plain local build.
    let plain_err = stderr_of(
        Command::new(driver)
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().copied()),
    );
    let plain_obj = read(&obj);
    let plain_dep = dep.as_ref().map(|d| read(d));
    std::fs::remove_file(&obj).unwrap();
    if let Some(d) = &dep {
        std::fs::remove_file(d).unwrap();
    }

    // 2. Preprocess on the client: same depfile, and no object.
    let pre = Command::new(driver)
        .envs(env.iter().copied())
        .args(job.preprocess_args())
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        pre.status.success(),
        "preprocess failed: {}",
        String::from_utf8_lossy(&pre.stderr)
    );
    let text = job
        .ship_text(pre.stdout.clone(), &std::fs::canonicalize(cwd).unwrap())
        .unwrap();
    assert!(!obj.exists(), "preprocessing wrote the object");
    if let (Some(d), Some(want)) = (&dep, &plain_dep) {
        let got = read(d);
        assert!(
            &got == want,
            "depfile differs:\n--- plain\n{}\n--- preprocess\n{}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&got)
        );
    }

    // 3. Exact remote compile in a directory unrelated to the client's.
    std::fs::create_dir_all(worker).unwrap();
    let cmd = job.remote_command(&text, worker).unwrap();
    cmd.write_input().unwrap();
    let out = Command::new(driver)
        .args(&cmd.args)
        .current_dir(&cmd.cwd)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .envs(forwarded.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "remote {:?} failed: {}",
        cmd.args,
        String::from_utf8_lossy(&out.stderr)
    );
    // Diagnostics: the local preprocessing reports the directive warnings, the worker the rest,
    // with the client's file names and line:column; only the quoted source excerpts are missing.
    let split = [pre.stderr.clone(), out.stderr.clone()].concat();
    assert_eq!(
        without_excerpts(&split),
        without_excerpts(&plain_err),
        "diagnostics differ"
    );
    let remote_obj = read(&cmd.output);
    assert!(
        remote_obj == plain_obj,
        "object differs for {args:?} (remote args {:?}); compare with `cmp`: plain {} bytes, remote {} bytes",
        cmd.args,
        plain_obj.len(),
        remote_obj.len()
    );

    // 4. Simple remote compile (`remote_args`): exact whenever there is no debug info.
    if !job.debug_info() && !job.is_clang() {
        let w2 = worker.join("simple");
        std::fs::create_dir_all(&w2).unwrap();
        std::fs::write(w2.join("in.i"), &text).unwrap();
        run(Command::new(driver)
            .envs(forwarded.iter().copied())
            .args(job.remote_args("in.i", "out.o"))
            .current_dir(&w2));
        assert!(
            read(&w2.join("out.o")) == plain_obj,
            "remote_args object differs"
        );
    }
    job
}

pub(crate) fn c_files() -> Vec<(&'static str, &'static str)> {
    vec![("inc/h.h", HEADER), ("src/foo.c", C_SRC)]
}
