#![allow(clippy::unwrap_used)]
//! Local reload on change, remote TTL cache and last good copy, validation errors.

use axum::Router;
use axum::routing::get;
use hybridgrid_agents_defs::{DefinitionError, Definitions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const GOOD: &str = "name: a\ntype: native\nbrain: {provider: openai, model: m1}\n";

fn write(root: &std::path::Path, name: &str, text: &str) {
    let dir = root.join("agents").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    // A new file (rename over) changes mtime or size even within one second.
    let tmp = dir.join(".config.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("config.yaml")).unwrap();
}

#[tokio::test]
async fn local_definitions_reload_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a", GOOD);
    let defs = Definitions::local(dir.path());
    assert_eq!(
        defs.get("a").await.unwrap().brain.as_ref().unwrap().model,
        "m1"
    );
    write(dir.path(), "a", &GOOD.replace("m1", "model-two"));
    assert_eq!(
        defs.get("a").await.unwrap().brain.as_ref().unwrap().model,
        "model-two"
    );
    write(
        dir.path(),
        "a",
        "name: a\ntype: native\nbrain: {provider: openai, model: m, temperature: 7}\n",
    );
    match defs.get("a").await {
        Err(DefinitionError::Invalid { file, field, .. }) => {
            assert!(file.ends_with("agents/a/config.yaml"), "{file}");
            assert_eq!(field, "brain.temperature");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        defs.get("missing").await,
        Err(DefinitionError::NotFound { .. })
    ));
    assert!(matches!(
        defs.get("../etc").await,
        Err(DefinitionError::NotFound { .. })
    ));
    assert_eq!(defs.names().await.unwrap(), vec!["a".to_owned()]);
}

#[tokio::test]
async fn remote_definitions_cache_and_keep_the_last_good_copy() {
    let hits = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (h, d) = (hits.clone(), down.clone());
    let app = Router::new()
        .route(
            "/agents/{name}/config.yaml",
            get(move || {
                let (h, d) = (h.clone(), d.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if d.load(Ordering::SeqCst) {
                        Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                    } else {
                        Ok(GOOD)
                    }
                }
            }),
        )
        .route("/agents/index.json", get(|| async { "[\"a\"]" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let defs = Definitions::remote(&base, Duration::from_millis(200)).unwrap();
    defs.get("a").await.unwrap();
    defs.get("a").await.unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "second get within the TTL is cached"
    );
    down.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hits.load(Ordering::SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "cache never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // After the TTL the server is asked again; its failure falls back to the last good copy.
        assert_eq!(defs.get("a").await.unwrap().name, "a");
    }
    assert!(matches!(
        Definitions::remote(&base, Duration::ZERO)
            .unwrap()
            .get("a")
            .await,
        Err(DefinitionError::Unreadable { .. })
    ));
    assert_eq!(defs.names().await.unwrap(), vec!["a".to_owned()]);
}
