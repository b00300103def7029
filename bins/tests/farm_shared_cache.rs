//! A farm on a real network (issue 16): the shared cache serves nothing that lacks the farm's MAC,
//! and no password appears in any log or `--stats` output (read-only clients use a Redis ACL
//! user).

mod support;

use redis::Commands;
use std::process::Command;
use support::*;

const REDIS: &str = "redis://127.0.0.1:6379";
const FARM_SECRET: &str = "e2e farm secret, 32 characters!";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

fn redis_cmd(args: &[&str]) -> Result<redis::Value, redis::RedisError> {
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut c = client.get_connection().expect("redis is up");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c)
}

#[test]
fn a_forged_shared_cache_entry_written_into_redis_is_never_served() {
    let tmp = TempDir::new("forged");
    let dir = tmp.path();
    let cleanup = RedisPrefix::new(REDIS, "forged");
    let prefix = cleanup.prefix().to_owned();
    let shared = [
        ("HG_CACHE_SHARED", REDIS),
        ("HG_CACHE_SHARED_PREFIX", prefix.as_str()),
        ("HG_CACHE_SHARED_SECRET", FARM_SECRET),
    ];
    let coord = Daemon::coordinator(dir, &[]);
    let _w = Daemon::worker_env(dir, "w", "127.0.0.2", &coord.grpc, None, &shared);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("p.c"), "int p(int x) { return x * 7 + 2; }\n").expect("write");
    let (code, _, err) = run(Command::new("gcc")
        .args(["-O2", "-c", "p.c", "-o", "plain.o"])
        .current_dir(dir));
    assert_eq!(code, 0, "{err}");
    let plain = std::fs::read(dir.join("plain.o")).expect("plain object");
    // Client A compiles through the farm; the worker shares the result, with its MAC.
    let a = dir.join("a");
    std::fs::create_dir_all(&a).expect("mkdir");
    let (code, _, err) = run(hgbuild(&a, &coord.grpc)
        .envs(shared)
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "a.o"])
        .current_dir(&a));
    assert_eq!(code, 0, "{err}");
    let keys = block_on(cleanup.keys());
    assert_eq!(keys.len(), 1, "one shared entry expected: {keys:?}");
    // The attacker can write Redis but has no secret: a well-formed entry with its own object.
    let digest: hybridgrid_core::Digest = keys[0]
        .rsplit(':')
        .next()
        .expect("hex")
        .parse()
        .expect("digest");
    let evil = hybridgrid_farm_protocol::CachedResult {
        exit_code: 0,
        stderr: Vec::new(),
        diag_env: [0; 32],
        object: b"\x7fELF evil".to_vec(),
    };
    let forged = hybridgrid_cache::entry::encode(&digest, &evil.encode());
    let client = redis::Client::open(REDIS).expect("url");
    let mut c = client.get_connection().expect("redis");
    let () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(forged)
        .query(&mut c)
        .expect("SET");
    // Client B, fresh local cache, default verification rates: never uses the forged object.
    let b = dir.join("b");
    std::fs::create_dir_all(&b).expect("mkdir");
    let (code, _, err) = run(hgbuild(&b, "127.0.0.1:1")
        .envs(shared)
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "b.o"])
        .current_dir(&b));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(b.join("b.o")).expect("b.o"), plain);
    assert_eq!(err, "", "the compile's stderr is the compiler's");
    let farm_log = std::fs::read_to_string(b.join("hgbuild.log")).unwrap_or_default();
    assert!(farm_log.contains("failed authentication"), "{farm_log}");
    let log = std::fs::read_to_string(b.join("stats.log")).expect("stats log");
    assert!(
        log.contains("cache_forged 1") && !log.contains("cache_hit shared"),
        "{log}"
    );
    let (_, out, _) = run(hgbuild(&b, "127.0.0.1:1").envs(shared).arg("--stats"));
    assert!(out.contains("1 forged shared entries refused"), "{out}");
    assert!(
        out.contains("entries authenticated with cache.shared_secret"),
        "{out}"
    );
}

/// A Redis ACL user with a password, deleted on drop.
struct AclUser {
    name: String,
    password: String,
}

impl AclUser {
    /// `rules` after `reset on >password`, as in docs/SECURITY.md.
    fn new(tag: &str, rules: &[String]) -> AclUser {
        let u = AclUser {
            name: format!("hg-{tag}-{}", std::process::id()),
            password: format!("pw{}{}", tag, uuid_like()),
        };
        let pass = format!(">{}", u.password);
        let mut args = vec![
            "ACL",
            "SETUSER",
            u.name.as_str(),
            "reset",
            "on",
            pass.as_str(),
        ];
        args.extend(rules.iter().map(String::as_str));
        redis_cmd(&args).expect("ACL SETUSER");
        u
    }

    fn url(&self, password: &str) -> String {
        format!("redis://{}:{password}@127.0.0.1:6379", self.name)
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        let _ = redis_cmd(&["ACL", "DELUSER", &self.name]);
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

#[test]
fn read_only_clients_use_an_acl_user_and_no_password_is_ever_printed() {
    let tmp = TempDir::new("acl");
    let dir = tmp.path();
    let cleanup = RedisPrefix::new(REDIS, "acl");
    let prefix = cleanup.prefix().to_owned();
    let keys = format!("~{prefix}cache:*");
    // The ACL lines of docs/SECURITY.md, for this test's prefix.
    let writer = AclUser::new(
        "writer",
        &[
            keys.clone(),
            "+getrange".into(),
            "+set".into(),
            "+del".into(),
            "+ping".into(),
        ],
    );
    let reader = AclUser::new("reader", &[keys, "+getrange".into(), "+ping".into()]);
    let wrong = "wrongpassword-not-this-one";
    let writer_url = writer.url(&writer.password);
    let reader_url = reader.url(&reader.password);
    let common = [
        ("HG_CACHE_SHARED_PREFIX", prefix.as_str()),
        ("HG_CACHE_SHARED_SECRET", FARM_SECRET),
    ];
    let coord = Daemon::coordinator(dir, &[]);
    let mut env = common.to_vec();
    env.extend([
        ("HG_CACHE_SHARED", writer_url.as_str()),
        ("HG_LOG_LEVEL", "debug"),
    ]);
    let w = Daemon::worker_env(dir, "w", "127.0.0.2", &coord.grpc, None, &env);
    wait_workers_up(&coord.http, 1);
    // A worker with a wrong password: it reports the failure, without the password.
    let bad_url = writer.url(wrong);
    let mut env = common.to_vec();
    env.extend([
        ("HG_CACHE_SHARED", bad_url.as_str()),
        ("HG_LOG_LEVEL", "debug"),
    ]);
    let bad = Daemon::worker_env(dir, "bad", "127.0.0.3", "127.0.0.1:1", None, &env);

    std::fs::write(dir.join("q.c"), "int q(int x) { return x * 5 - 3; }\n").expect("write");
    let mut printed = String::new();
    let mut client = |name: &str, url: &str, coord_addr: &str| {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).expect("mkdir");
        let (code, out, err) = run(hgbuild(&home, coord_addr)
            .envs(common)
            .env("HG_CACHE_SHARED", url)
            .env("HG_CACHE_SHARED_READ_ONLY", "true")
            .env("HG_LOG_LEVEL", "debug")
            .args(["gcc", "-O2", "-c", "../q.c", "-o", "q.o"])
            .current_dir(&home));
        assert_eq!(code, 0, "{name}: {err}");
        let (_, stats_out, stats_err) = run(hgbuild(&home, coord_addr)
            .envs(common)
            .env("HG_CACHE_SHARED", url)
            .env("HG_CACHE_SHARED_READ_ONLY", "true")
            .arg("--stats"));
        // The farm's own messages go to the log file, never into the compile's stderr.
        let farm_log = std::fs::read_to_string(home.join("hgbuild.log")).unwrap_or_default();
        printed.push_str(&format!("{out}{err}{stats_out}{stats_err}{farm_log}"));
        (
            std::fs::read_to_string(home.join("stats.log")).expect("stats log"),
            stats_out,
        )
    };
    // Read-only client A: compiled remotely; only the worker writes the shared entry.
    let (log, _) = client("a", &reader_url, &coord.grpc);
    assert!(log.contains("remote w"), "{log}");
    assert_eq!(block_on(cleanup.key_count()), 1);
    // Read-only client B: a shared hit through the read-only user.
    let (log, stats_out) = client("b", &reader_url, "127.0.0.1:1");
    assert!(log.contains("cache_hit shared"), "{log}");
    assert!(
        stats_out.contains("read-only") && stats_out.contains(":***@"),
        "{stats_out}"
    );
    // Client C with a wrong password: compiles anyway, says the shared tier is unavailable.
    let c_url = reader.url(wrong);
    let (log, _) = client("c", &c_url, "127.0.0.1:1");
    assert!(log.contains("fallback coordinator_unreachable"), "{log}");
    // (An authentication failure within the 500 ms connect budget, or the budget running out
    // while the client retries: either way named, with the password masked.)
    assert!(
        printed.contains("shared compile cache unavailable")
            || printed.contains("shared compile cache did not answer"),
        "{printed}"
    );
    // The server refuses writes by the read-only user whatever a client is configured to do.
    let denied = redis::Client::open(reader_url.as_str())
        .expect("url")
        .get_connection()
        .expect("connect as reader")
        .set::<_, _, ()>(format!("{prefix}cache:x"), "x")
        .expect_err("the read-only user wrote");
    assert!(denied.to_string().contains("no permissions"), "{denied}");

    let logs = [
        w.log_text(),
        bad.log_text(),
        std::fs::read_to_string(&coord.log).unwrap_or_default(),
        printed,
    ]
    .concat();
    assert!(
        bad.log_text().contains("shared compile cache unavailable"),
        "{}",
        bad.log_text()
    );
    for secret in [
        writer.password.as_str(),
        reader.password.as_str(),
        wrong,
        FARM_SECRET,
    ] {
        assert!(!logs.contains(secret), "{secret:?} was printed:\n{logs}");
    }
}
