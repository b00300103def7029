//! `hgbuild doctor`, `hg-coord doctor`, `hg-worker doctor` (issue 17): each fault the guide lists
//! is injected for real — coordinator down, worker down, circuit open (by a mismatch, with
//! `--features fault-injection`, and by timeouts), timeouts hit, cache directory not writable,
//! Docker absent, expired certificate — and the doctor names it with its fix and exits 1; a
//! healthy farm passes with exit 0.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

/// Runs a doctor; returns (exit code, stdout).
fn doctor(cmd: &mut Command) -> (i32, String) {
    let (code, out, err) = run(cmd.env_remove("DOCKER_HOST"));
    assert!(!out.is_empty(), "{cmd:?} printed nothing (stderr: {err})");
    (code, out)
}

fn coord_doctor(grpc: &str, http: &str) -> Command {
    let mut c = Command::new(COORD);
    c.args(["doctor", "--grpc-addr", grpc, "--http-addr", http])
        .env_remove("HG_CONFIG");
    c
}

fn worker_doctor(grpc: &str, http: &str, coord: &str) -> Command {
    let mut c = Command::new(WORKER);
    c.args(["doctor", "--grpc-addr", grpc, "--http-addr", http])
        .args(["--coordinator", coord])
        .env_remove("HG_CONFIG");
    c
}

/// A port nothing listens on (bound, then released).
fn closed_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    drop(l);
    a
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

#[test]
fn a_healthy_farm_passes_every_doctor() {
    let tmp = TempDir::new("doctor-ok");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let w = Daemon::worker(dir, "w1", "127.0.0.1", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);

    let (code, out) = doctor(
        hgbuild(dir, &coord.grpc)
            .env("HG_CACHE_DIR", dir.join("cache"))
            .args(["doctor", "--http", &coord.http]),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "[ ok ] coordinator gRPC").contains("answers"),
        "{out}"
    );
    assert!(
        line(&out, "[ ok ] worker w1").contains("circuit closed"),
        "{out}"
    );
    assert!(line(&out, "[ ok ] cache.dir").contains("writable"), "{out}");

    let (code, out) = doctor(&mut coord_doctor(&coord.grpc, &coord.http));
    assert_eq!(code, 0, "{out}");
    let port = line(&out, "[ ok ] coordinator gRPC port");
    assert!(
        port.contains(&format!("pid {} (hg-coord)", coord.pid())),
        "the doctor names the process on the port: {out}"
    );
    assert!(out.contains("[ ok ] coordinator /health"), "{out}");

    let (code, out) = doctor(&mut worker_doctor(&w.grpc, &w.http, &coord.grpc));
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "[ ok ] worker gRPC port").contains(&format!("pid {} (hg-worker)", w.pid())),
        "{out}"
    );
    assert!(out.contains("[ ok ] coordinator reachable"), "{out}");
    assert!(out.contains("[ ok ] Docker engine"), "{out}");
}

#[test]
fn coordinator_down_is_named_with_how_to_start_it() {
    let tmp = TempDir::new("doctor-coord-down");
    let dir = tmp.path();
    let gone = closed_addr();
    let (code, out) = doctor(
        hgbuild(dir, &gone)
            .env("HG_CACHE_DIR", dir.join("cache"))
            .arg("doctor"),
    );
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] coordinator gRPC");
    assert!(
        l.contains(&gone) && l.contains("start hg-coord serve"),
        "{out}"
    );

    let (code, out) = doctor(&mut coord_doctor(&gone, &closed_addr()));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] coordinator gRPC port");
    assert!(
        l.contains("nothing answers") && l.contains("hg-coord serve"),
        "{out}"
    );
    assert!(out.contains("[FAIL] coordinator /health"), "{out}");
}

#[test]
fn a_worker_that_died_is_found_down_with_the_fix() {
    let tmp = TempDir::new("doctor-worker-down");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let mut w = Daemon::worker(dir, "w1", "127.0.0.1", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    let (grpc, http) = (w.grpc.clone(), w.http.clone());
    w.child.kill().expect("kill worker");
    let _ = w.child.wait();
    let down = wait_until(Duration::from_secs(20), || {
        stats(&coord.http)["workers"]
            .as_array()
            .is_some_and(|ws| ws.iter().any(|w| w["id"] == "w1" && w["state"] == "down"))
    });
    assert!(down, "{}", stats(&coord.http));

    let (code, out) = doctor(&mut coord_doctor(&coord.grpc, &coord.http));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] worker w1");
    assert!(
        l.contains("is down") && l.contains("hg-worker serve"),
        "{out}"
    );
    assert!(l.contains("heartbeat"), "the reason is shown: {out}");

    let (code, out) = doctor(&mut worker_doctor(&grpc, &http, &coord.grpc));
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "[FAIL] worker gRPC port").contains("hg-worker serve"),
        "{out}"
    );
}

#[cfg(feature = "fault-injection")]
#[test]
fn an_open_circuit_is_shown_with_the_reason_of_its_failures() {
    let tmp = TempDir::new("doctor-circuit");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _bad = Daemon::worker_env(
        dir,
        "faulty",
        "127.0.0.1",
        &coord.grpc,
        None,
        &[("HG_FAULT_FLIP_OBJECT_BYTE", "1")],
    );
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("hello.c"), "int hello(void) { return 42; }\n").expect("source");
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .current_dir(dir)
        .env("HG_VERIFY_RATE", "1.0")
        .env("HG_CACHE_ENABLED", "false")
        .args(["gcc", "-O2", "-c", "hello.c", "-o", "hello.o"]));
    assert_eq!(code, 0, "{err}");
    let open = wait_until(Duration::from_secs(10), || {
        stats(&coord.http)["workers"].as_array().is_some_and(|ws| {
            ws.iter()
                .any(|w| w["id"] == "faulty" && w["circuit"]["state"] == "open")
        })
    });
    assert!(open, "the circuit did not open: {}", stats(&coord.http));

    let (code, out) = doctor(&mut coord_doctor(&coord.grpc, &coord.http));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] worker faulty");
    assert!(l.contains("circuit open (output_mismatch"), "{out}");
    assert!(l.contains("last failures: output_mismatch"), "{out}");
    assert!(l.contains("open_timeout"), "the fix is named: {out}");
    assert!(out.contains("[WARN] verification"), "{out}");

    let (code, out) = doctor(
        hgbuild(dir, &coord.grpc)
            .env("HG_CACHE_DIR", dir.join("cache"))
            .args(["doctor", "--http", &coord.http]),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "[FAIL] worker faulty").contains("circuit open"),
        "{out}"
    );
}

#[test]
fn timeouts_and_the_circuit_they_open_are_named_with_the_fix() {
    let tmp = TempDir::new("doctor-timeouts");
    let dir = tmp.path();
    let coord = Daemon::coordinator(
        dir,
        &[
            ("HG_COORDINATOR_BREAKER_MIN_CALLS", "1"),
            ("HG_COORDINATOR_BREAKER_OPEN_TIMEOUT", "10m"),
        ],
    );
    let _slow = Daemon::worker_env(
        dir,
        "slow",
        "127.0.0.1",
        &coord.grpc,
        None,
        &[("HG_WORKER_TASK_TIMEOUT", "1ms")],
    );
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("hello.c"), "int hello(void) { return 42; }\n").expect("source");
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .current_dir(dir)
        .env("HG_CACHE_ENABLED", "false")
        .args(["gcc", "-O2", "-c", "hello.c", "-o", "hello.o"]));
    assert_eq!(code, 0, "compiled locally after the timeout: {err}");
    let open = wait_until(Duration::from_secs(10), || {
        stats(&coord.http)["workers"].as_array().is_some_and(|ws| {
            ws.iter()
                .any(|w| w["id"] == "slow" && w["circuit"]["state"] == "open")
        })
    });
    assert!(open, "the circuit did not open: {}", stats(&coord.http));

    let (code, out) = doctor(&mut coord_doctor(&coord.grpc, &coord.http));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] worker slow");
    assert!(l.contains("circuit open (failure_rate"), "{out}");
    assert!(
        l.contains("last failures: deadline_exceeded: deadline exceeded after 1ms"),
        "{out}"
    );
    assert!(l.contains("open_timeout"), "the fix is named: {out}");
    let t = line(&out, "[WARN] timeouts");
    assert!(
        t.contains("1 task(s) hit their deadline") && t.contains("raise worker.task_timeout"),
        "{out}"
    );
    assert!(
        line(&out, "[ ok ] local fallbacks").contains("workers_failed: 1"),
        "{out}"
    );
}

#[test]
fn the_cache_hit_rate_is_shown_with_the_most_common_miss_reason() {
    let tmp = TempDir::new("doctor-miss-reason");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _w = Daemon::worker(dir, "w1", "127.0.0.1", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    // Files written just before a compile get no direct-mode entry (they may still be changing):
    // each version is dated in the past, a different second each.
    let write_past = |name: &str, body: &str, secs_ago: u64| {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write");
        let when = std::time::SystemTime::now() - Duration::from_secs(secs_ago);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .expect("set mtime");
    };
    write_past(
        "use.c",
        "#include \"value.h\"\nint use(void) { return VALUE; }\n",
        120,
    );
    let compile = || {
        let (code, _, err) = run(hgbuild(dir, &coord.grpc)
            .current_dir(dir)
            .env("HG_CACHE_DIR", dir.join("cache"))
            .args(["gcc", "-O2", "-c", "use.c", "-o", "use.o"]));
        assert_eq!(code, 0, "{err}");
    };
    // A first compile (new source), the header edited twice, then the same again (a hit).
    for (n, secs_ago) in [(1, 100), (2, 90), (3, 80)] {
        write_past("value.h", &format!("#define VALUE {n}\n"), secs_ago);
        compile();
    }
    compile();
    let (code, out) = doctor(
        hgbuild(dir, &coord.grpc)
            .env("HG_CACHE_DIR", dir.join("cache"))
            .args(["doctor", "--http", &coord.http]),
    );
    assert_eq!(code, 0, "{out}");
    let l = line(&out, "[ ok ] cache hit rate");
    assert!(l.contains("25.0% (1 hits, 3 misses)"), "{out}");
    assert!(
        l.contains("most common miss reason: headers_changed (2)")
            && l.contains("an included header changed"),
        "{out}"
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn an_unwritable_cache_directory_is_named_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = TempDir::new("doctor-cache");
    let dir = tmp.path();
    let home = dir.join("home");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(&cache).expect("cache");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut cmd = hgbuild(&home, &closed_addr());
    cmd.env("HG_CACHE_DIR", &cache).arg("doctor");
    if is_root() {
        // Root writes anywhere: the user who cannot write here is `nobody`, as on a machine
        // where the cache directory belongs to another account.
        cmd.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    }
    let (code, out) = doctor(&mut cmd);
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] cache.dir");
    assert!(l.contains(&cache.display().to_string()), "{out}");
    assert!(
        l.contains("not writable") && l.contains("chmod 755"),
        "{out}"
    );
    let _ = std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755));
}

#[test]
fn docker_absent_or_an_image_missing_is_named_with_the_fix() {
    let tmp = TempDir::new("doctor-docker");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let w = Daemon::worker(dir, "w1", "127.0.0.1", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    let (code, out, _) = run(worker_doctor(&w.grpc, &w.http, &coord.grpc)
        .env("DOCKER_HOST", "unix:///nonexistent/hg-doctor/docker.sock"));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] Docker engine");
    assert!(
        l.contains("Docker not available: no socket at /nonexistent/hg-doctor/docker.sock"),
        "{out}"
    );
    assert!(l.contains("apt-get install docker.io"), "{out}");

    // The engine here, but an image the executor needs is not on it.
    let (code, out) = doctor(
        worker_doctor(&w.grpc, &w.http, &coord.grpc).args(["--image", "hg-doctor-absent:1"]),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[ ok ] Docker engine"), "{out}");
    let l = line(&out, "[FAIL] Docker image hg-doctor-absent:1");
    assert!(
        l.contains("not on this engine") && l.contains("docker build -t hg-doctor-absent:1"),
        "{out}"
    );
}

fn write_tls_config(dir: &Path, days_expired: Option<u64>) -> std::path::PathBuf {
    use hybridgrid_transport::tls::{Role, certgen};
    let ca = certgen::new_ca("doctor test CA", 30).expect("CA");
    certgen::write_pair(dir, "ca", &ca).expect("write CA");
    let validity = match days_expired {
        Some(d) => certgen::Validity::expired(Duration::from_secs(d * 86_400)),
        None => certgen::Validity::days(30),
    };
    let pair = certgen::issue(&ca, Role::Client, "c1", &[], validity).expect("issue");
    certgen::write_pair(dir, "c1", &pair).expect("write cert");
    let cfg = dir.join("farm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "tls:\n  ca: {0}/ca.crt\n  cert: {0}/c1.crt\n  key: {0}/c1.key\n",
            dir.display()
        ),
    )
    .expect("config");
    cfg
}

#[test]
fn an_expired_certificate_is_named_with_its_date_and_the_fix() {
    let tmp = TempDir::new("doctor-tls");
    let dir = tmp.path();
    let cfg = write_tls_config(dir, Some(3));
    let (code, out) = doctor(
        hgbuild(dir, &closed_addr())
            .env("HG_CONFIG", &cfg)
            .env("HG_CACHE_DIR", dir.join("cache"))
            .arg("doctor"),
    );
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] TLS certificate (tls.cert)");
    assert!(l.contains("c1.crt") && l.contains("expired on"), "{out}");
    assert!(l.contains("hg-coord cert issue"), "{out}");
    assert!(out.contains("[ ok ] TLS CA (tls.ca)"), "{out}");
    assert!(out.contains("[ ok ] TLS issuer"), "{out}");
}

#[test]
fn a_certificate_from_another_ca_or_for_another_name_is_named_with_the_fix() {
    use hybridgrid_transport::tls::{Role, certgen};
    let tmp = TempDir::new("doctor-tls-ca");
    let dir = tmp.path();
    let farm_ca = certgen::new_ca("farm CA", 30).expect("CA");
    certgen::write_pair(dir, "ca", &farm_ca).expect("write CA");
    // The coordinator's certificate came from another farm's CA and names another host.
    let other_ca = certgen::new_ca("other farm CA", 30).expect("other CA");
    let pair = certgen::issue(
        &other_ca,
        Role::Coordinator,
        "coord",
        &["coord.other.lan".into()],
        certgen::Validity::days(30),
    )
    .expect("issue");
    certgen::write_pair(dir, "coord", &pair).expect("write cert");
    let cfg = dir.join("farm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "tls:\n  ca: {0}/ca.crt\n  cert: {0}/coord.crt\n  key: {0}/coord.key\n",
            dir.display()
        ),
    )
    .expect("config");
    let port = closed_addr().rsplit_once(':').expect("port").1.to_owned();
    let (code, out) = doctor(
        Command::new(COORD)
            .args(["doctor", "--config"])
            .arg(&cfg)
            .args(["--grpc-addr", &format!("localhost:{port}")])
            .args(["--http-addr", &closed_addr()]),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[ ok ] TLS certificate (tls.cert)"), "{out}");
    let l = line(&out, "[FAIL] TLS issuer");
    assert!(
        l.contains("other farm CA") && l.contains("peers will refuse it"),
        "{out}"
    );
    assert!(l.contains("reissue the certificate from it"), "{out}");
    let l = line(&out, "[FAIL] TLS names");
    assert!(
        l.contains("coord.other.lan") && l.contains("reissue it with --host localhost"),
        "{out}"
    );
}
