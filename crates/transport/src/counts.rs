//! [`Counts`]: counters by one label that are both read as a map (for `/api/stats`) and scraped
//! as a Prometheus counter family (`/metrics`), from one source, so the two can never disagree.

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Counters keyed by the value of one label; additions saturate.
///
/// ```
/// use hybridgrid_transport::counts::Counts;
/// let fallbacks = Counts::new("fallbacks", "Local fallbacks, by fallback_reason", "fallback_reason");
/// fallbacks.add("no_workers", 2);
/// fallbacks.add("no_workers", 1);
/// assert_eq!(fallbacks.snapshot()["no_workers"], 3);
/// let mut registry = prometheus_client::registry::Registry::with_prefix("hybridgrid");
/// registry.register_collector(Box::new(fallbacks.clone()));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("hybridgrid_fallbacks_total{fallback_reason=\"no_workers\"} 3"));
/// ```
#[derive(Clone, Debug)]
pub struct Counts(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    map: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    /// Counters named `name` (the registry adds its prefix and `_total`), labelled `label`.
    pub fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self(Arc::new(Inner {
            name,
            help,
            label,
            map: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Adds `n` to the counter of `key`.
    pub fn add(&self, key: &str, n: u64) {
        let mut map = self.0.map.lock();
        match map.get_mut(key) {
            Some(v) => *v = v.saturating_add(n),
            None => {
                map.insert(key.to_owned(), n);
            }
        }
    }

    /// Removes the counter of `key` (e.g. a pruned worker's series).
    pub fn remove(&self, key: &str) {
        self.0.map.lock().remove(key);
    }

    /// Every counter, by key.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.map.lock().clone()
    }

    /// The sum of all counters.
    pub fn total(&self) -> u64 {
        self.0
            .map
            .lock()
            .values()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

impl Collector for Counts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        let mut family =
            encoder.encode_descriptor(self.0.name, self.0.help, None, MetricType::Counter)?;
        for (key, n) in snapshot {
            let labels = [(self.0.label, key)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
