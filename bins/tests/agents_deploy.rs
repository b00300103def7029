//! Schema check of the Kubernetes manifests in `deploy/agents/`: every file parses, has the
//! required fields, and the references between them (ConfigMap, Secret, HPA target, selectors,
//! runner modes) resolve.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn manifests() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/agents");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value =
                yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("missing string {path}"))
}

#[test]
fn manifests_are_complete_and_consistent() {
    let all = manifests();
    let of = |kind: &str| -> Vec<&(String, Value)> {
        all.iter().filter(|(_, v)| v["kind"] == kind).collect()
    };
    for (file, v) in &all {
        for f in ["apiVersion", "kind", "metadata.name", "metadata.namespace"] {
            let _ = s(v, f);
        }
        assert_eq!(s(v, "metadata.namespace"), "hg-agents", "{file}");
    }
    let configmaps: BTreeSet<&str> = of("ConfigMap")
        .iter()
        .map(|(_, v)| s(v, "metadata.name"))
        .collect();
    let secrets: BTreeSet<&str> = of("Secret")
        .iter()
        .map(|(_, v)| s(v, "metadata.name"))
        .collect();
    let cm = &of("ConfigMap")[0].1["data"];
    for key in [
        "HUB_URL",
        "VALKEY_URL",
        "AGENT_DEFINITIONS_PATH",
        "MIN_STALENESS_SECONDS",
        "ACTIVATION_TIMEOUT",
        "MAX_CONCURRENT_ACTIVATIONS",
    ] {
        assert!(cm[key].is_string(), "ConfigMap lacks {key}");
    }
    assert!(of("Secret")[0].1["stringData"]["HUB_API_KEY"].is_string());
    let deployments = of("Deployment");
    let mut modes = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (file, d) in &deployments {
        assert_eq!(s(d, "apiVersion"), "apps/v1", "{file}");
        names.insert(s(d, "metadata.name"));
        let sel = &d["spec"]["selector"]["matchLabels"];
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        for (k, v) in sel.as_object().unwrap() {
            assert_eq!(
                &labels[k], v,
                "{file}: selector {k} does not match the pod labels"
            );
        }
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert!(c["image"].is_string(), "{file}");
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            args[0] == "coordinator" || args[0] == "runner",
            "{file}: {args:?}"
        );
        if let Some(m) = args.iter().find_map(|a| a.strip_prefix("--mode=")) {
            assert!(
                ["notification", "exploration", "hybrid"].contains(&m),
                "{file}: {m}"
            );
            modes.insert(m.to_owned());
        }
        for r in c["envFrom"].as_array().unwrap() {
            if let Some(n) = r["configMapRef"]["name"].as_str() {
                assert!(configmaps.contains(n), "{file}: no ConfigMap {n}");
            }
            if let Some(n) = r["secretRef"]["name"].as_str() {
                assert!(secrets.contains(n), "{file}: no Secret {n}");
            }
        }
        assert_eq!(c["ports"][0]["containerPort"], 9090, "{file}: admin port");
        assert_eq!(s(c, "readinessProbe.httpGet.path"), "/health", "{file}");
    }
    assert_eq!(modes.len(), 3, "a runner per mode: {modes:?}");
    assert!(names.contains("hg-agents-coordinator"));
    for (file, h) in of("HorizontalPodAutoscaler") {
        assert_eq!(s(h, "apiVersion"), "autoscaling/v2", "{file}");
        let target = s(h, "spec.scaleTargetRef.name");
        assert!(names.contains(target), "{file}: no Deployment {target}");
        assert!(
            h["spec"]["minReplicas"].as_u64().unwrap()
                <= h["spec"]["maxReplicas"].as_u64().unwrap()
        );
    }
    assert!(!of("HorizontalPodAutoscaler").is_empty());
}
