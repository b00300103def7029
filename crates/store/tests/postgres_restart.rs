//! `PostgresStore` across a real server restart. The shared server on :5432 is never restarted
//! (other tests use it): this test runs a private, throwaway PostgreSQL cluster (`initdb` +
//! `pg_ctl` from the installed PostgreSQL, as the `postgres` user when run as root) on a free
//! loopback port in a temp dir, stops it under the store, and starts it again.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use hybridgrid_core::Store;
use hybridgrid_core::config::HumanDuration;
use hybridgrid_core::store::StoreError;
use hybridgrid_store::{PoolOptions, PostgresStore};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// A private PostgreSQL cluster; stopped and deleted on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn new() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries are required in /usr/lib/postgresql/<version>/bin")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("no /usr/lib/postgresql/<version>/bin/initdb");
        let dir = std::env::temp_dir().join(hybridgrid_testkit::unique_prefix("pgrestart"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { bin, dir, port };
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(&cluster.dir)
                .status()
                .unwrap();
            assert!(ok.success(), "chown postgres {}", cluster.dir.display());
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Runs a PostgreSQL tool (as `postgres` when we are root: the server refuses to run as root).
    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let exe = self.bin.join("pg_ctl");
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_survives_a_server_restart() {
    let cluster = Cluster::new();
    cluster.start();
    let pool = PoolOptions {
        max_connections: 3,
        acquire_timeout: HumanDuration(Duration::from_secs(1)),
    };
    let store = PostgresStore::connect(&cluster.url(), Some("hg"), pool)
        .await
        .unwrap();
    let wf = store.save_workflow("flow", json!({"v": 1})).await.unwrap();
    store.workflows().await.unwrap();
    assert!(store.pool_stats().size >= 1);

    // Outage: every operation fails, with a retryable Backend error (not pool exhaustion).
    cluster.stop();
    for _ in 0..3 {
        let err = store.workflow(&wf.id).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Backend {
                    backend: "postgres",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.retry().is_retryable(), "{err}");
        let server = format!("127.0.0.1:{}", cluster.port);
        assert!(
            err.to_string().contains(&server),
            "the error names {server}: {err}"
        );
    }

    // Back: the same store works again (the pool reconnects), and the data is there.
    cluster.start();
    let errors = Mutex::new(Vec::new());
    let back = hybridgrid_testkit::eventually(Duration::from_secs(20), || async {
        match store.workflow(&wf.id).await {
            Ok(w) => Some(w),
            Err(e) => {
                errors.lock().unwrap().push(e);
                None
            }
        }
    })
    .await
    .expect("the store works again after the server restarted");
    assert_eq!(back, wf);
    for e in errors.lock().unwrap().iter() {
        assert!(
            e.retry().is_retryable(),
            "non-retryable error while the server came back: {e}"
        );
    }
    let v2 = store.save_workflow("flow", json!({"v": 2})).await.unwrap();
    assert_eq!(v2.version, 2);
    store.close().await;
    let dir = cluster.dir.clone();
    drop(cluster);
    assert!(!dir.exists(), "cluster dir left behind: {}", dir.display());
}
