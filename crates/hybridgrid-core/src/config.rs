//! Config loading shared by every binary: defaults, then a YAML file, then `HG_*` environment
//! overrides, into a typed struct, with errors that name the bad key and value.
//!
//! Each leaf `a.b.c` of the config can be overridden by `HG_A_B_C` (list values take commas).
//! Callers may add aliases such as the guides' `HG_LOG_LEVEL` for `logging.level`.
//!
//! ```
//! use hybridgrid_core::config::{load, HumanDuration};
//! use serde::{Deserialize, Serialize};
//! use std::collections::BTreeMap;
//!
//! #[derive(Serialize, Deserialize, Default, Debug)]
//! #[serde(deny_unknown_fields, default)]
//! struct Worker { task_timeout: HumanDuration, max_concurrent_tasks: u32 }
//! #[derive(Serialize, Deserialize, Default, Debug)]
//! #[serde(deny_unknown_fields, default)]
//! struct Config { worker: Worker }
//!
//! let env = BTreeMap::from([("HG_WORKER_TASK_TIMEOUT".to_string(), "10m".to_string())]);
//! let cfg: Config = load(None, &env, &[]).unwrap();
//! assert_eq!(cfg.worker.task_timeout.as_secs(), 600);
//!
//! let bad = BTreeMap::from([("HG_WORKER_TASK_TIMEOUT".to_string(), "-5m".to_string())]);
//! let err = load::<Config>(None, &bad, &[]).unwrap_err().to_string();
//! assert!(err.contains("worker.task_timeout"), "{err}");
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Where environment overrides come from; injectable so tests need not touch the process env.
pub trait EnvSource {
    /// The value of `key`, if set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// Why a config could not be loaded. The message names the file, key and value concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A key has a value of the wrong type or range, or is unknown.
    #[error("invalid config at {key}: {message}")]
    Invalid {
        /// Dotted key path (`worker.task_timeout`).
        key: String,
        /// What is wrong, naming the value.
        message: String,
    },
}

/// Loads `T`: its `Default`, overlaid with the YAML file (if any), overlaid with environment variables.
/// `aliases` maps extra variable names to dotted keys, e.g. `("HG_LOG_LEVEL", "logging.level")`.
pub fn load<T>(
    file: Option<&Path>,
    env: &dyn EnvSource,
    aliases: &[(&str, &str)],
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut tree = serde_json::to_value(T::default()).map_err(|e| ConfigError::Invalid {
        key: "<defaults>".into(),
        message: e.to_string(),
    })?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        if !text.trim().is_empty() {
            let overlay: Value = yaml_serde::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: one_line(&e.to_string()),
            })?;
            if !overlay.is_null() {
                if !overlay.is_object() {
                    return Err(ConfigError::Invalid {
                        key: "<root>".into(),
                        message: format!("{} must hold a mapping of sections", path.display()),
                    });
                }
                merge(&mut tree, overlay);
            }
        }
    }
    apply_env(&mut tree, env, aliases);
    let de = tree;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = one_line(&e.path().to_string());
        ConfigError::Invalid {
            key,
            message: one_line(&e.into_inner().to_string()),
        }
    })
}

/// Escapes control characters (newlines included), so an error stays on one log line whatever
/// the file or variable held.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn apply_env(tree: &mut Value, env: &dyn EnvSource, aliases: &[(&str, &str)]) {
    let mut leaves = Vec::new();
    collect_leaves(tree, &mut Vec::new(), &mut leaves);
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in leaves {
        let var = format!("HG_{}", path.join("_").to_ascii_uppercase());
        names.insert(var, path);
    }
    // Aliases are applied first so the canonical name wins when both are set.
    let alias_paths = aliases.iter().map(|(var, key)| {
        (
            var.to_string(),
            key.split('.').map(str::to_owned).collect::<Vec<_>>(),
        )
    });
    for (var, path) in alias_paths.chain(names) {
        if let Some(raw) = env.var(&var) {
            set_path(tree, &path, &raw);
        }
    }
}

fn collect_leaves(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(k.clone());
                collect_leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn set_path(tree: &mut Value, path: &[String], raw: &str) {
    let mut cur = tree;
    for key in path {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Value::Object(map) = cur else { return };
        cur = map.entry(key.clone()).or_insert(Value::Null);
    }
    *cur = match cur {
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Value::Bool(_) | Value::Number(_) => {
            yaml_serde::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
        }
        _ => Value::String(raw.to_owned()),
    };
}

/// A non-negative duration written as `250ms`, `30s`, `5m`, `1h30m` (or a bare number of seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
}

impl Deref for HumanDuration {
    type Target = Duration;
    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            f.write_str("0s")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(input: &str) -> Result<Self, String> {
        let s = input.trim();
        if s.starts_with('-') {
            return Err(format!(
                "invalid duration {input:?}: durations cannot be negative"
            ));
        }
        if s.is_empty() {
            return Err("invalid duration \"\": expected e.g. 30s, 5m, 1h30m".into());
        }
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Self::from_secs(secs));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            let (num, tail) = rest.split_at(digits);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len());
            let (unit, next) = tail.split_at(unit_len);
            let n: f64 = num
                .parse()
                .map_err(|_| format!("invalid duration {input:?}: expected e.g. 30s, 5m, 1h30m"))?;
            let scale = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                other => {
                    return Err(format!(
                        "invalid duration {input:?}: unknown unit {other:?} (use ms, s, m, h or d)"
                    ));
                }
            };
            total = Duration::try_from_secs_f64(n * scale)
                .ok()
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| too_large(input))?;
            rest = next;
        }
        Ok(Self(total))
    }
}

/// The error for a duration beyond what [`Duration`] holds (about 584 billion years).
fn too_large(input: &str) -> String {
    format!(
        "invalid duration {input:?}: too large (at most {} s)",
        u64::MAX
    )
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Float(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Int(n) if n < 0 => Err(serde::de::Error::custom(format!(
                "invalid duration {n}: durations cannot be negative"
            ))),
            Raw::Int(n) => Ok(Self::from_secs(n as u64)),
            Raw::Float(f) if f < 0.0 => Err(serde::de::Error::custom(format!(
                "invalid duration {f}: durations cannot be negative"
            ))),
            Raw::Float(f) if !f.is_finite() => Err(serde::de::Error::custom(format!(
                "invalid duration {f}: expected a finite number of seconds"
            ))),
            Raw::Float(f) => Duration::try_from_secs_f64(f)
                .map(Self)
                .map_err(|_| serde::de::Error::custom(too_large(&f.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        timeout: HumanDuration,
        slots: u32,
        peers: Vec<String>,
        name: String,
    }
    impl Default for Section {
        fn default() -> Self {
            Self {
                timeout: HumanDuration::from_secs(300),
                slots: 4,
                peers: vec![],
                name: "a".into(),
            }
        }
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        worker: Section,
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn yaml(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::new(text)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn new(text: &str) -> Self {
                let p = std::env::temp_dir().join(format!("hg-cfg-{}.yaml", uuid::Uuid::new_v4()));
                std::fs::write(&p, text).expect("write temp config");
                Self(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn durations_parse() {
        for (s, ms) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("7", 7000),
            ("1.5s", 1500),
        ] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().as_millis(), ms, "{s}");
        }
        assert!(
            "-5m"
                .parse::<HumanDuration>()
                .unwrap_err()
                .contains("negative")
        );
        assert!("5 parsecs".parse::<HumanDuration>().is_err());
        assert!("m".parse::<HumanDuration>().is_err());
        assert_eq!(HumanDuration::from_secs(300).to_string(), "5m");
    }

    #[test]
    fn overflowing_durations_are_one_line_errors_naming_the_key() {
        for value in [
            "99999999999999999999d",
            "18446744073709551615s1s",
            "1000000000000000000000000h",
        ] {
            let err = load::<Cfg>(None, &env(&[("HG_WORKER_TIMEOUT", value)]), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("worker.timeout") && err.contains("too large"),
                "{value}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        for value in ["1e300", "1.9e19", ".inf", ".nan", "-0.5"] {
            let f = yaml(&format!("worker:\n  timeout: {value}\n"));
            let err = load::<Cfg>(Some(&f.0), &env(&[]), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("worker.timeout"), "{value}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // The largest representable values still load.
        let f = yaml("worker:\n  timeout: 1e18\n");
        let cfg: Cfg = load(Some(&f.0), &env(&[]), &[]).unwrap();
        assert_eq!(cfg.worker.timeout.as_secs(), 1_000_000_000_000_000_000);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever a variable holds, loading returns (never panics), and a refusal is one line
        /// naming the key.
        #[test]
        fn any_env_value_loads_or_names_the_key(value in ".*", key in proptest::sample::select(
            vec!["HG_WORKER_TIMEOUT", "HG_WORKER_SLOTS", "HG_WORKER_PEERS", "HG_WORKER_NAME"])) {
            if let Err(e) = load::<Cfg>(None, &env(&[(key, value.as_str())]), &[]) {
                let text = e.to_string();
                proptest::prop_assert!(!text.contains('\n'), "{}", text);
                let field = key.trim_start_matches("HG_WORKER_").to_ascii_lowercase();
                proptest::prop_assert!(text.contains(&format!("worker.{field}")), "{}", text);
            }
        }

        /// Numbers of any size and shape written as a YAML duration load or give a one-line error.
        #[test]
        fn any_yaml_number_as_duration_loads_or_names_the_key(
            f in proptest::num::f64::ANY, n in proptest::num::i64::ANY, text in "[0-9.]{1,25}[a-z]{0,2}",
        ) {
            for value in [format!("{f:e}"), f.to_string(), n.to_string(), text.clone()] {
                let file = yaml(&format!("worker:\n  timeout: {value}\n"));
                if let Err(e) = load::<Cfg>(Some(&file.0), &env(&[]), &[]) {
                    let text = e.to_string();
                    proptest::prop_assert!(!text.contains('\n'), "{}", text);
                    proptest::prop_assert!(text.contains("worker.timeout"), "{}: {}", value, text);
                }
            }
        }

        /// Arbitrary file contents never panic the loader, and every error is one line.
        #[test]
        fn any_file_loads_or_fails_on_one_line(text in "(?s).{0,200}") {
            let file = yaml(&text);
            if let Err(e) = load::<Cfg>(Some(&file.0), &env(&[]), &[]) {
                let text = e.to_string();
                proptest::prop_assert!(!text.contains('\n'), "{}", text);
            }
        }
    }

    #[test]
    fn file_then_env_overrides() {
        let f = yaml("worker:\n  slots: 8\n  timeout: 10m\n");
        let cfg: Cfg = load(
            Some(&f.0),
            &env(&[("HG_WORKER_SLOTS", "2"), ("HG_WORKER_PEERS", "a:1, b:2")]),
            &[],
        )
        .unwrap();
        assert_eq!(cfg.worker.slots, 2);
        assert_eq!(*cfg.worker.timeout, Duration::from_secs(600));
        assert_eq!(cfg.worker.peers, vec!["a:1".to_string(), "b:2".to_string()]);
        let cfg: Cfg = load(
            None,
            &env(&[("HG_SLOTS", "3")]),
            &[("HG_SLOTS", "worker.slots")],
        )
        .unwrap();
        assert_eq!(cfg.worker.slots, 3);
    }

    #[test]
    fn errors_name_key_and_value() {
        let f = yaml("worker:\n  timeout: -5m\n");
        let err = load::<Cfg>(Some(&f.0), &env(&[]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("worker.timeout") && err.contains("-5m") && err.contains("negative"),
            "{err}"
        );
        let f = yaml("worker:\n  slotz: 3\n");
        let err = load::<Cfg>(Some(&f.0), &env(&[]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("slotz"), "{err}");
        let f = yaml("worker: [unclosed\n");
        let err = load::<Cfg>(Some(&f.0), &env(&[]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid YAML"), "{err}");
        let err = load::<Cfg>(None, &env(&[("HG_WORKER_SLOTS", "many")]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("worker.slots") && err.contains("many"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let err = load::<Cfg>(Some(Path::new("/nonexistent/hg.yaml")), &env(&[]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/hg.yaml"), "{err}");
    }
}
