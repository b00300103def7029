//! Alert webhooks: AlertManager's v4 payload and Grafana's (unified alerting, which reuses the
//! AlertManager shape, and the legacy `ruleName`/`state` form), turned into one [`Alert`] each, and
//! the label-matching rules (`alerts.rules`) that map alerts to workflows.
//!
//! A run is started once per alert fingerprint and firing episode: AlertManager re-sends a firing
//! alert every `repeat_interval` (and on every group change) with the same fingerprint and
//! `startsAt`, so `(fingerprint, startsAt)` names the episode and is the run's idempotency key.
//! Missing fields are tolerated: no `status` means firing, no fingerprint is computed from the
//! labels, no annotations are an empty map.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// An AlertManager webhook body (`version: "4"`). Every field but `alerts` may be missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AlertmanagerPayload {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub group_key: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: Option<String>,
    pub alerts: Vec<RawAlert>,
}

/// One alert as AlertManager (or Grafana) sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawAlert {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The alert is active.
    #[default]
    Firing,
    /// The alert has ended.
    Resolved,
}

/// A normalised alert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alert {
    pub state: AlertState,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub fingerprint: String,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub generator_url: Option<String>,
    pub source: &'static str,
}

impl Alert {
    /// The run context templates see as `context.*` (`context.alert.labels.severity`).
    pub(crate) fn context(&self, envelope: &Map<String, Value>) -> Value {
        let mut ctx = envelope.clone();
        ctx.insert(
            "alert".into(),
            json!({
                "status": match self.state { AlertState::Firing => "firing", AlertState::Resolved => "resolved" },
                "labels": self.labels,
                "annotations": self.annotations,
                "fingerprint": self.fingerprint,
                "startsAt": self.starts_at,
                "endsAt": self.ends_at,
                "generatorURL": self.generator_url,
            }),
        );
        ctx.insert("source".into(), Value::String(self.source.to_owned()));
        Value::Object(ctx)
    }

    /// The idempotency key of this alert's firing episode (see the module doc).
    pub(crate) fn episode_key(&self, workflow: &str) -> String {
        let episode = self.starts_at.as_deref().unwrap_or("no-startsAt");
        format!("alert:{workflow}:{}:{episode}", self.fingerprint)
    }
}

/// FNV-1a over the sorted label pairs: a stable fingerprint when the sender gave none.
pub(crate) fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn state_of(s: Option<&str>) -> Result<AlertState, String> {
    match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("firing") | Some("alerting") => Ok(AlertState::Firing),
        Some("resolved") | Some("ok") | Some("normal") => Ok(AlertState::Resolved),
        Some(other) => Err(format!(
            "alert status {other:?} is neither \"firing\" nor \"resolved\""
        )),
    }
}

impl AlertmanagerPayload {
    /// The envelope fields every alert's context carries.
    pub(crate) fn envelope(&self, source: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("receiver".into(), json!(self.receiver));
        m.insert("groupKey".into(), json!(self.group_key));
        m.insert("groupLabels".into(), json!(self.group_labels));
        m.insert("commonLabels".into(), json!(self.common_labels));
        m.insert("commonAnnotations".into(), json!(self.common_annotations));
        m.insert("externalURL".into(), json!(self.external_url));
        m.insert("version".into(), json!(self.version));
        m.insert("webhook".into(), json!(source));
        m
    }

    /// Normalises every alert; an alert with an unknown status is an error naming its index.
    pub(crate) fn alerts(&self, source: &'static str) -> Result<Vec<Alert>, String> {
        let default_state = self.status.as_deref();
        self.alerts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let state = state_of(a.status.as_deref().or(default_state))
                    .map_err(|e| format!("alerts[{i}]: {e}"))?;
                let fingerprint = a
                    .fingerprint
                    .clone()
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| label_fingerprint(&a.labels));
                Ok(Alert {
                    state,
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone().unwrap_or_default(),
                    fingerprint,
                    starts_at: a.starts_at.clone().filter(|s| !s.is_empty()),
                    ends_at: a.ends_at.clone(),
                    generator_url: a.generator_url.clone(),
                    source,
                })
            })
            .collect()
    }
}

/// Grafana's legacy webhook (`ruleName`, `state`, `evalMatches`); unified alerting sends the
/// AlertManager shape instead, which [`parse_grafana`] tries first.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrafanaLegacy {
    #[serde(default)]
    rule_name: Option<String>,
    #[serde(default)]
    rule_id: Option<Value>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "ruleUrl")]
    rule_url: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// Parses a Grafana webhook body (unified or legacy) into the AlertManager shape.
pub(crate) fn parse_grafana(body: Value) -> Result<AlertmanagerPayload, String> {
    if body.get("alerts").is_some() {
        return serde_json::from_value(body)
            .map_err(|e| format!("Grafana (unified alerting) payload: {e}"));
    }
    let legacy: GrafanaLegacy =
        serde_json::from_value(body).map_err(|e| format!("Grafana legacy payload: {e}"))?;
    let name = legacy
        .rule_name
        .clone()
        .or(legacy.title.clone())
        .ok_or("Grafana payload has neither `alerts` nor `ruleName`/`title`")?;
    let mut labels = legacy.tags.clone();
    labels.insert("alertname".into(), name.clone());
    let mut annotations = BTreeMap::new();
    if let Some(m) = legacy.message.clone() {
        annotations.insert("message".into(), m);
    }
    let fingerprint = match &legacy.rule_id {
        Some(id) => format!("grafana-rule-{}", id.to_string().trim_matches('"')),
        None => label_fingerprint(&labels),
    };
    Ok(AlertmanagerPayload {
        version: None,
        group_key: None,
        status: None,
        receiver: Some("grafana".into()),
        group_labels: BTreeMap::new(),
        common_labels: labels.clone(),
        common_annotations: annotations.clone(),
        external_url: legacy.rule_url.clone(),
        alerts: vec![RawAlert {
            status: legacy.state.clone(),
            labels,
            annotations: Some(annotations),
            starts_at: None,
            ends_at: None,
            generator_url: legacy.rule_url,
            fingerprint: Some(fingerprint),
        }],
    })
}

/// `alerts.rules[]`: alerts whose labels match `match` start `workflow`.
///
/// ```yaml
/// alerts:
///   rules:
///     - match: { alertname: DiskFull, severity: critical }   # "*" = label present
///       workflow: clean-disk          # workflow name or id
///       on: firing                    # firing (default) | resolved | both
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Label equalities, all of which must hold; a value of `"*"` only needs the label present.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    /// The workflow to start, by name or id.
    pub workflow: String,
    /// Which alert states start it.
    #[serde(default)]
    pub on: RuleOn,
}

/// Which states a rule fires on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleOn {
    /// Firing alerts only (default).
    #[default]
    Firing,
    /// Resolved alerts only.
    Resolved,
    /// Both.
    Both,
}

impl AlertRule {
    pub(crate) fn matches(&self, alert: &Alert) -> bool {
        let state_ok = match self.on {
            RuleOn::Firing => alert.state == AlertState::Firing,
            RuleOn::Resolved => alert.state == AlertState::Resolved,
            RuleOn::Both => true,
        };
        state_ok
            && self
                .matchers
                .iter()
                .all(|(k, want)| match alert.labels.get(k) {
                    Some(v) => want == "*" || v == want,
                    None => false,
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn am(body: Value) -> AlertmanagerPayload {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn guide_minimal_payload_is_tolerated() {
        let p = am(json!({"alerts": [{"labels": {"alertname": "test"}}]}));
        let a = p.alerts("alertmanager").unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].state, AlertState::Firing);
        assert!(a[0].annotations.is_empty());
        assert_eq!(a[0].fingerprint, label_fingerprint(&a[0].labels));
        let ctx = a[0].context(&p.envelope("alertmanager"));
        assert_eq!(ctx["alert"]["labels"]["alertname"], "test");
    }

    #[test]
    fn v4_payload_with_resolved_alert() {
        let p = am(json!({
            "version": "4", "groupKey": "{}:{alertname=\"Disk\"}", "status": "resolved",
            "receiver": "flow", "groupLabels": {"alertname": "Disk"}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
            "alerts": [{"status": "resolved", "labels": {"alertname": "Disk", "severity": "critical"},
                "annotations": {"summary": "full"}, "startsAt": "2026-12-01T00:00:00Z",
                "endsAt": "2026-12-01T00:05:00Z", "generatorURL": "http://prom", "fingerprint": "abc"}]
        }));
        let a = &p.alerts("alertmanager").unwrap()[0];
        assert_eq!(a.state, AlertState::Resolved);
        assert_eq!(a.episode_key("w"), "alert:w:abc:2026-12-01T00:00:00Z");
        let rule = AlertRule {
            matchers: BTreeMap::from([
                ("alertname".into(), "Disk".into()),
                ("severity".into(), "*".into()),
            ]),
            workflow: "w".into(),
            on: RuleOn::Firing,
        };
        assert!(!rule.matches(a), "a firing rule ignores resolved alerts");
        let both = AlertRule {
            on: RuleOn::Both,
            ..rule.clone()
        };
        assert!(both.matches(a));
        let other = AlertRule {
            matchers: BTreeMap::from([("alertname".into(), "Cpu".into())]),
            ..both
        };
        assert!(!other.matches(a));
    }

    #[test]
    fn unknown_status_names_the_alert() {
        let p = am(json!({"alerts": [{"labels": {}}, {"status": "exploded"}]}));
        let e = p.alerts("alertmanager").unwrap_err();
        assert!(e.contains("alerts[1]") && e.contains("exploded"), "{e}");
    }

    #[test]
    fn grafana_legacy_and_unified() {
        let p = parse_grafana(
            json!({"ruleName": "High latency", "ruleId": 7, "state": "alerting",
            "message": "p99 > 1s", "tags": {"team": "web"}}),
        )
        .unwrap();
        let a = &p.alerts("grafana").unwrap()[0];
        assert_eq!(a.labels["alertname"], "High latency");
        assert_eq!(a.labels["team"], "web");
        assert_eq!(a.fingerprint, "grafana-rule-7");
        assert_eq!(a.state, AlertState::Firing);
        let p = parse_grafana(
            json!({"alerts": [{"status": "firing", "labels": {"alertname": "X"},
            "fingerprint": "f1", "startsAt": "2026-01-01T00:00:00Z"}]}),
        )
        .unwrap();
        assert_eq!(p.alerts("grafana").unwrap()[0].fingerprint, "f1");
        assert!(parse_grafana(json!({"foo": 1})).is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_label_sensitive() {
        let a = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let b = BTreeMap::from([("a".to_string(), "2".to_string())]);
        assert_eq!(label_fingerprint(&a), label_fingerprint(&a.clone()));
        assert_ne!(label_fingerprint(&a), label_fingerprint(&b));
    }
}
