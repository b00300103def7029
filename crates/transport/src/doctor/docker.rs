//! The Docker engine probes of `hg-worker doctor`: the engine answering on `DOCKER_HOST` (or the
//! default socket) and the configured images present, with the guide's "Docker not available"
//! fixes.

use super::{Check, Verdict, check, exchange, tcp_connect};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the Docker engine is: `DOCKER_HOST` (`unix://PATH`, `tcp://HOST:PORT`), else the default
/// socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerHost {
    /// A Unix socket.
    Unix(PathBuf),
    /// Plain TCP.
    Tcp(String),
}

impl DockerHost {
    /// From a `DOCKER_HOST` value, or `/var/run/docker.sock` when `None`.
    pub fn parse(docker_host: Option<&str>) -> Result<DockerHost, String> {
        match docker_host.filter(|s| !s.is_empty()) {
            None => Ok(DockerHost::Unix("/var/run/docker.sock".into())),
            Some(h) => {
                if let Some(p) = h.strip_prefix("unix://") {
                    Ok(DockerHost::Unix(p.into()))
                } else if let Some(a) = h.strip_prefix("tcp://") {
                    Ok(DockerHost::Tcp(a.trim_end_matches('/').to_owned()))
                } else {
                    Err(format!(
                        "DOCKER_HOST={h:?}: expected unix:///path/docker.sock or tcp://host:port"
                    ))
                }
            }
        }
    }

    fn get(&self, path: &str) -> Result<(u16, String), String> {
        let t = Duration::from_secs(5);
        let req = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
        match self {
            DockerHost::Unix(p) => {
                let mut s = std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                exchange(&mut s, &req, t)
            }
            DockerHost::Tcp(a) => exchange(&mut tcp_connect(a, t)?, &req, t),
        }
    }
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerHost::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerHost::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The Docker engine answers (`/_ping`, `/version`) and has `images` (`repo:tag`). `required`
/// makes an absent engine a failure (a Docker executor is configured), else a warning.
pub fn docker_checks(host: Option<&str>, required: bool, images: &[String]) -> Vec<Check> {
    let mut out = Vec::new();
    let name = "Docker engine";
    let absent = if required {
        Verdict::Fail
    } else {
        Verdict::Warn
    };
    let host = match DockerHost::parse(host) {
        Ok(h) => h,
        Err(e) => return vec![check(name, absent, e)],
    };
    let fix = "install it (apt-get install docker.io), start it (systemctl start docker), or point DOCKER_HOST at the engine's socket";
    if let DockerHost::Unix(p) = &host
        && !p.exists()
    {
        out.push(check(
            name,
            absent,
            format!("Docker not available: no socket at {}: {fix}", p.display()),
        ));
        return out;
    }
    let version = match host.get("/version") {
        Ok((200, body)) => body,
        Ok((code, body)) => {
            out.push(check(
                name,
                absent,
                format!(
                    "Docker not available: {host} answered {code}: {}",
                    body.trim()
                ),
            ));
            return out;
        }
        Err(e) => {
            let detail = if e.contains("ermission denied") {
                format!(
                    "Docker not available: {e}: let this user use the socket (sudo usermod -aG docker $USER, then log out and back in)"
                )
            } else {
                format!("Docker not available: {e}: {fix}")
            };
            out.push(check(name, absent, detail));
            return out;
        }
    };
    let field = |k: &str| {
        serde_json::from_str::<serde_json::Value>(&version)
            .ok()
            .and_then(|v| v[k].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    };
    out.push(check(
        name,
        Verdict::Ok,
        format!(
            "{host}: engine {} (API {})",
            field("Version"),
            field("ApiVersion")
        ),
    ));
    let tags: Vec<String> = match host.get("/images/json") {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|i| {
                i["RepoTags"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
            })
            .collect(),
        Ok((code, body)) => {
            out.push(check(
                "Docker images",
                Verdict::Fail,
                format!("listing images answered {code}: {}", body.trim()),
            ));
            return out;
        }
        Err(e) => {
            out.push(check("Docker images", Verdict::Fail, e));
            return out;
        }
    };
    for want in images {
        let full = if want.contains(':') {
            want.clone()
        } else {
            format!("{want}:latest")
        };
        let c = if tags.contains(&full) {
            check(format!("Docker image {want}"), Verdict::Ok, "present")
        } else {
            check(
                format!("Docker image {want}"),
                Verdict::Fail,
                format!(
                    "not on this engine: build it here (docker build -t {want} DIR, or docker import ROOTFS.tar {want}) or pull it where pulls work (docker pull {want})"
                ),
            )
        };
        out.push(c);
    }
    if images.is_empty() {
        out.push(check(
            "Docker images",
            Verdict::Ok,
            format!("{} tagged image(s) on the engine", tags.len()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_forms() {
        assert_eq!(
            DockerHost::parse(None).unwrap(),
            DockerHost::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            DockerHost::parse(Some("tcp://127.0.0.1:2375/")).unwrap(),
            DockerHost::Tcp("127.0.0.1:2375".into())
        );
        assert!(DockerHost::parse(Some("ssh://x")).is_err());
    }

    #[test]
    fn a_missing_docker_socket_is_named_with_the_fix() {
        let c = docker_checks(Some("unix:///nonexistent/docker.sock"), true, &[]);
        assert_eq!(c[0].verdict, Verdict::Fail);
        assert!(
            c[0].detail
                .contains("Docker not available: no socket at /nonexistent/docker.sock")
        );
        assert!(c[0].detail.contains("apt-get install docker.io"));
    }
}
