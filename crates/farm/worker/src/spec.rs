//! The worker's own checks of a compile request, and the exact local command derived from it.
//! A request names the client's original arguments; nothing in it may make the compiler load code
//! or read or write files of the requester's choosing.

use hybridgrid_core::{Executor, TaskSpec};
use hybridgrid_farm_protocol::{PREPROCESSED_INPUT, parse_command};

/// Compiler flags that would make a worker load code or write files of the requester's choosing.
/// (The compiler crate already runs such invocations locally; this is the worker's own check.)
const FORBIDDEN_FLAG_PREFIXES: &[&str] = &[
    "-fplugin",
    "-B",
    "-wrapper",
    "-specs",
    "--specs",
    "-load",
    "-Xclang",
    "-Xlinker",
    "-Xassembler",
    "-Wl,",
    "-fprofile-use",
    "-fprofile-generate",
    "-fauto-profile",
    "-save-temps",
    "-dumpdir",
    "-dumpbase",
    "-fdump",
    "-fcallgraph-info",
    "-fstack-usage",
    "--param=",
];
const PATH_MAP_FLAGS: &[&str] = &[
    "-fdebug-prefix-map=",
    "-fmacro-prefix-map=",
    "-ffile-prefix-map=",
];

/// Why a worker refuses a compile request. Every variant is an `INVALID_SPEC` failure on the wire
/// (mapped in one place, `service.rs`), and its text names the argument at fault.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A response file (`@file`): its contents are the client's, not in the request.
    #[error("response files are not accepted: {0:?}")]
    ResponseFile(String),
    /// A flag that would load code or write files of the requester's choosing.
    #[error("flag {flag:?} is not accepted by workers (matches {prefix:?})")]
    ForbiddenFlag {
        /// The argument.
        flag: String,
        /// The refused prefix it matches.
        prefix: &'static str,
    },
    /// A `-W<tool>,...=/path` flag naming an absolute path for a tool to write.
    #[error("flag {0:?} names an absolute path for a tool to write")]
    ToolWritesPath(String),
    /// Not `-c`: workers only compile.
    #[error("only compile-only (-c) invocations are accepted")]
    NotCompileOnly,
    /// The arguments are not a compile the farm can run exactly.
    #[error("not a distributable compile: {0}")]
    NotDistributable(String),
    /// The request carries no preprocessed text.
    #[error("compile request has no {PREPROCESSED_INPUT:?} input")]
    MissingInput,
    /// The executor has no private work directory to compile in.
    #[error("the {0} executor cannot run exact compiles")]
    NoWorkDir(&'static str),
    /// The exact command could not be derived.
    #[error("cannot derive the compile command: {0}")]
    Derive(String),
    /// A derived argument names a path outside the work directory.
    #[error("argument {arg:?} names a path ({path:?}); workers do not accept that")]
    NamesPath {
        /// The argument.
        arg: String,
        /// The path in it.
        path: String,
    },
}

/// Most stderr/stdout bytes a worker keeps per stream of a compile.
pub(crate) const MAX_STREAM_BYTES: usize = 4 << 20;
/// Largest object a worker returns (the reply must stay under the gRPC message limit).
pub(crate) const MAX_OBJECT_BYTES: usize = 128 << 20;

/// The worker's own output bounds, whatever the request asked: the whole reply must fit in one
/// gRPC message.
pub(crate) fn bounded_limits(
    asked: &hybridgrid_core::OutputLimits,
) -> hybridgrid_core::OutputLimits {
    hybridgrid_core::OutputLimits {
        max_stream_bytes: asked.max_stream_bytes.min(MAX_STREAM_BYTES),
        max_file_bytes: asked.max_file_bytes.min(MAX_OBJECT_BYTES),
    }
}

/// Checks the derived command: apart from the worker's own input, output and prefix maps, no word
/// may name an absolute path or climb out with `..` in a value (`-f...=/path`, `-Wa,-a=/path`,
/// `-foptimization-record-file=../../x`): code-generation flags must not make the compiler read or
/// write files of the requester's choosing.
fn check_derived_args(cmd: &hybridgrid_compiler::RemoteCommand) -> Result<(), RequestError> {
    for word in &cmd.args {
        let w = word.to_string_lossy();
        if std::path::Path::new(word) == cmd.input_path.as_path()
            || std::path::Path::new(word) == cmd.output.as_path()
            || PATH_MAP_FLAGS.iter().any(|p| w.starts_with(p))
        {
            continue;
        }
        let values = w.split(['=', ',']).skip(usize::from(w.starts_with('-')));
        for v in values {
            if v.starts_with('/') || v == ".." || v.starts_with("../") || v.contains("/../") {
                return Err(RequestError::NamesPath {
                    arg: w.to_string(),
                    path: v.to_owned(),
                });
            }
        }
        if w.starts_with('/') {
            return Err(RequestError::NamesPath {
                path: w.clone().into_owned(),
                arg: w.into_owned(),
            });
        }
    }
    Ok(())
}

/// Checks the client's original compiler arguments before the worker derives its command from them.
pub fn validate_compile_args(args: &[String]) -> Result<(), RequestError> {
    for a in args {
        if a.starts_with('@') {
            return Err(RequestError::ResponseFile(a.clone()));
        }
        if let Some(p) = FORBIDDEN_FLAG_PREFIXES.iter().find(|p| a.starts_with(*p)) {
            return Err(RequestError::ForbiddenFlag {
                flag: a.clone(),
                prefix: p,
            });
        }
        if a.starts_with("-W")
            && a.contains("=/")
            && !PATH_MAP_FLAGS.iter().any(|p| a.starts_with(p))
        {
            return Err(RequestError::ToolWritesPath(a.clone()));
        }
    }
    if !args.iter().any(|a| a == "-c") {
        return Err(RequestError::NotCompileOnly);
    }
    Ok(())
}

/// Turns a compile request (`command = [toolchain, original args...]`, input
/// [`PREPROCESSED_INPUT`]) into the exact local command: the worker recompiles the text at a
/// path mirroring the client's (see `hybridgrid_compiler::CompileJob::remote_command`), in this
/// task's work directory, and returns the object as [`OBJECT_OUTPUT`].
pub(crate) fn compile_spec(
    executor: &dyn Executor,
    spec: TaskSpec,
    compiler: &std::path::Path,
) -> Result<TaskSpec, RequestError> {
    validate_compile_args(spec.command.get(1..).unwrap_or_default())?;
    let job = match parse_command(&spec.command) {
        hybridgrid_compiler::Invocation::Distributable(job) => job,
        hybridgrid_compiler::Invocation::Local(reason) => {
            return Err(RequestError::NotDistributable(format!("{reason:?}")));
        }
    };
    let text = spec
        .inputs
        .iter()
        .find(|f| f.path == PREPROCESSED_INPUT)
        .ok_or(RequestError::MissingInput)?;
    // A fresh id: the work directory's name must not come from the network.
    let id = hybridgrid_core::TaskId::new(uuid::Uuid::new_v4().simple().to_string());
    let dir = executor
        .work_dir_for(&id)
        .ok_or_else(|| RequestError::NoWorkDir(executor.kind()))?;
    let cmd = job
        .remote_command(&text.contents, &dir)
        .map_err(|e| RequestError::Derive(e.to_string()))?;
    let rel = |p: &std::path::Path| -> Result<String, RequestError> {
        p.strip_prefix(&dir)
            .map(|r| r.to_string_lossy().into_owned())
            .map_err(|_| RequestError::NamesPath {
                arg: p.display().to_string(),
                path: p.display().to_string(),
            })
    };
    check_derived_args(&cmd)?;
    let mut command = vec![compiler.to_string_lossy().into_owned()];
    command.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
    Ok(TaskSpec {
        id,
        command,
        // The client's values of the variables that shape the output or its diagnostics
        // (SOURCE_DATE_EPOCH, LANG, ...), and nothing else; then the command's own (PWD).
        env: spec
            .env
            .iter()
            .filter(|(k, _)| hybridgrid_compiler::CLIENT_ENV.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(cmd.env.iter().map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            }))
            .collect(),
        stdin: Default::default(),
        inputs: vec![hybridgrid_core::InputFile {
            path: rel(&cmd.input_path)?,
            contents: cmd.input.into(),
            executable: false,
        }],
        outputs: vec![rel(&cmd.output)?],
        cwd: Some(rel(&cmd.cwd)?),
        image: None,
        timeout: spec.timeout,
        limits: bounded_limits(&spec.limits),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn compile_args_are_checked() {
        let ok = |a: &str| validate_compile_args(&args(a));
        assert!(ok("-O2 -g -I/usr/include -c /src/a.c -o ../obj/a.o").is_ok());
        assert!(ok("-fdebug-prefix-map=/a=/b -c a.c").is_ok());
        assert!(matches!(
            ok("-O2 a.c -o a"),
            Err(RequestError::NotCompileOnly)
        ));
        assert!(matches!(
            ok("-fplugin=x.so -c a.c"),
            Err(RequestError::ForbiddenFlag {
                prefix: "-fplugin",
                ..
            })
        ));
        assert!(matches!(
            ok("-Wa,-adhln=/etc/cron.d/x -c a.c"),
            Err(RequestError::ToolWritesPath(_))
        ));
        assert!(ok("@rsp -c a.c").is_err());
        assert!(ok("-B/tmp/evil -c a.c").is_err());
    }

    #[test]
    fn derived_args_may_not_name_paths() {
        let derive = |extra: &str| {
            let mut command = vec![
                "gcc".to_owned(),
                "-c".into(),
                "a.c".into(),
                "-o".into(),
                "a.o".into(),
            ];
            command.extend(extra.split_whitespace().map(str::to_owned));
            match parse_command(&command) {
                hybridgrid_compiler::Invocation::Distributable(job) => {
                    let cmd = job.remote_command(
                        b"# 0 \"a.c\"\n# 0 \"/src//\"\nint x;\n",
                        std::path::Path::new("/w/hg-1"),
                    );
                    Some(check_derived_args(&cmd.expect("remote command")))
                }
                // Refused already by the argument table: just as good.
                hybridgrid_compiler::Invocation::Local(_) => None,
            }
        };
        for bad in [
            "-foptimization-record-file=/etc/x",
            "-foptimization-record-file=../../x",
            "-fdiagnostics-add-output=sarif:file=/tmp/x",
        ] {
            if let Some(r) = derive(bad) {
                assert!(r.is_err(), "{bad} was accepted");
            }
        }
        assert!(matches!(
            derive("-O2 -g -fPIC -march=x86-64 -Wa,--noexecstack"),
            Some(Ok(()))
        ));
        assert!(matches!(derive("-fdebug-prefix-map=/src=/x"), Some(Ok(()))));
    }
}
