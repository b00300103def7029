//! `RedisQueue` on a real Redis Cluster: three local `redis-server --cluster-enabled yes` masters
//! on free loopback ports (joined with `redis-cli --cluster create`), killed at the end. The whole
//! conformance suite runs on it, with every queue under its own hash tag, so each queue's keys
//! sit in one slot while different queues spread over the three masters.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod redis_support;

use hybridgrid_core::{FencingToken, NewWork, Queue, QueueError};
use hybridgrid_queue::RedisQueue;
use hybridgrid_testkit::unique_prefix;
use redis_support::Cluster;
use std::collections::HashSet;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_conforms_on_a_cluster() {
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();

    // The queues of the suite land on different masters.
    let owners: HashSet<String> = (0..12)
        .map(|_| {
            let tag = unique_prefix("slot");
            cluster.nodes[0]
                .cli(&["cluster", "keyslot", &format!("{{{tag}}}")])
                .trim()
                .to_owned()
        })
        .collect();
    assert!(owners.len() > 1, "hash tags should spread over slots");

    let urls2 = urls.clone();
    hybridgrid_testkit::queue::run_queue_suite(|| {
        let urls = urls2.clone();
        async move {
            let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
            let prefix = format!("{{{}}}:", unique_prefix("conform"));
            Arc::new(RedisQueue::connect_cluster(&nodes, prefix).await.unwrap()) as Arc<dyn Queue>
        }
    })
    .await;

    let prefix = format!("{{{}}}:", unique_prefix("live"));
    let q = RedisQueue::connect_cluster(&nodes, prefix).await.unwrap();
    hybridgrid_testkit::queue::run_liveness_check(Arc::new(q)).await;

    let urls3 = urls.clone();
    hybridgrid_testkit::queue::run_aging_suite(move |aging| {
        let urls = urls3.clone();
        async move {
            let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
            let prefix = format!("{{{}}}:", unique_prefix("aging"));
            let q = RedisQueue::connect_cluster(&nodes, prefix).await.unwrap();
            Arc::new(q.with_aging(aging)) as Arc<dyn Queue>
        }
    })
    .await;

    // Fencing: the counter must share the queue's hash tag; then one script checks and enqueues.
    let tag = unique_prefix("fence");
    let q = RedisQueue::connect_cluster(&nodes, format!("{{{tag}}}:"))
        .await
        .unwrap();
    let fence = format!("{{{tag}}}:leader:fence");
    let client = redis::cluster::ClusterClient::new(nodes.clone()).unwrap();
    let mut admin = client.get_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(&fence)
        .arg(7)
        .query_async(&mut admin)
        .await
        .unwrap();
    q.enqueue_fenced(NewWork::new(&b"ok"[..]), &fence, FencingToken(7))
        .await
        .unwrap();
    let stale = q
        .enqueue_fenced(NewWork::new(&b"no"[..]), &fence, FencingToken(6))
        .await;
    assert!(matches!(stale, Err(QueueError::Fenced { .. })), "{stale:?}");
    let other_slot = q
        .enqueue_fenced(
            NewWork::new(&b"no"[..]),
            "{elsewhere}:fence",
            FencingToken(7),
        )
        .await;
    assert!(
        matches!(other_slot, Err(QueueError::Invalid(_))),
        "{other_slot:?}"
    );
    assert_eq!(q.depths().await.unwrap().ready_total(), 1);
    drop(cluster);
}

#[tokio::test]
async fn a_cluster_prefix_without_a_hash_tag_is_refused() {
    let err = RedisQueue::connect_cluster(&["redis://127.0.0.1:1"], "jobs:")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Invalid(m) if m.contains("hash tag") && m.contains("jobs:")),
        "{err}"
    );
}
