//! `BreakerConfig` and `Backoff` load through `hybridgrid_core::config::load` (YAML + `HG_*` env),
//! exactly as their doc comments show them.

#![allow(clippy::unwrap_used)]

use hybridgrid_core::config::load;
use hybridgrid_scheduler::{Backoff, BreakerConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    breaker: BreakerConfig,
    backoff: Backoff,
}

const YAML: &str = "
breaker:
  window: 2m
  min_calls: 10
  failure_rate_threshold: 0.25
  open_timeout: 45s
backoff:
  base: 250ms
  max: 1m
  factor: 3.0
";

fn write_temp(text: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = std::env::temp_dir().join(format!(
        "hg-scheduler-config-{}-{nanos}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn loads_yaml_with_env_overrides() {
    let path = write_temp(YAML);
    let env = BTreeMap::from([("HG_BREAKER_OPEN_TIMEOUT".to_string(), "90s".to_string())]);
    let cfg: Config = load(Some(&path), &env, &[]).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        cfg.breaker,
        BreakerConfig {
            window: Duration::from_secs(120),
            min_calls: 10,
            failure_rate_threshold: 0.25,
            open_timeout: Duration::from_secs(90),
        }
    );
    assert_eq!(
        cfg.backoff,
        Backoff {
            base: Duration::from_millis(250),
            max: Duration::from_secs(60),
            factor: 3.0
        }
    );
}

#[test]
fn defaults_apply_and_unknown_keys_are_named() {
    let cfg: Config = load(None, &BTreeMap::new(), &[]).unwrap();
    assert_eq!(cfg.breaker, BreakerConfig::default());
    assert_eq!(cfg.backoff, Backoff::default());

    let path = write_temp("breaker:\n  open_timout: 10s\n");
    let err = load::<Config>(Some(&path), &BTreeMap::new(), &[])
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(err.contains("open_timout"), "{err}");

    let bad = BTreeMap::from([("HG_BREAKER_WINDOW".to_string(), "-5s".to_string())]);
    let err = load::<Config>(None, &bad, &[]).unwrap_err().to_string();
    assert!(err.contains("breaker.window"), "{err}");
}
