//! Sampled verification (`verify.rate`): the client recompiles a sampled remote result locally,
//! the exact way the worker does (`CompileJob::remote_command` in a private directory), and compares
//! the objects byte for byte. A worker that returns other bytes is caught before its objects poison
//! a build: the local object is used, and the coordinator opens the worker's circuit.

use hybridgrid_compiler::CompileJob;
use std::path::Path;
use std::process::Command;

/// True with probability `rate` (0.0–1.0).
pub fn sampled(rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    // 53 random bits from a v4 UUID: uniform in [0, 1).
    let bits = (uuid::Uuid::new_v4().as_u128() >> 75) as u64;
    (bits as f64 / (1u64 << 53) as f64) < rate
}

/// Compiles `text` (the client's preprocessed output) locally as a worker would; returns the object.
pub fn local_object(compiler: &Path, job: &CompileJob, text: &[u8]) -> Result<Vec<u8>, String> {
    let base = std::env::temp_dir()
        .canonicalize()
        .map_err(|e| format!("temp dir: {e}"))?;
    let dir = base.join(format!("hgbuild-verify-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = (|| {
        let cmd = job.remote_command(text, &dir).map_err(|e| e.to_string())?;
        cmd.write_input()
            .map_err(|e| format!("writing the input: {e}"))?;
        std::fs::create_dir_all(&cmd.cwd).map_err(|e| format!("{}: {e}", cmd.cwd.display()))?;
        let out = Command::new(compiler)
            .args(&cmd.args)
            .current_dir(&cmd.cwd)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| format!("running {}: {e}", compiler.display()))?;
        if !out.status.success() {
            return Err(format!(
                "local recompile failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::fs::read(&cmd.output).map_err(|e| format!("{}: {e}", cmd.output.display()))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_honours_the_bounds() {
        assert!(!sampled(0.0));
        assert!(sampled(1.0));
        let hits = (0..10_000).filter(|_| sampled(0.25)).count();
        assert!((2000..3000).contains(&hits), "{hits} of 10000 at rate 0.25");
    }
}
