//! The known-worker set behind every discovery here, and the fan-out of its changes to watchers.

use futures::stream::{BoxStream, StreamExt};
use hybridgrid_core::{WorkerEvent, WorkerId, WorkerInfo};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// Workers known now, plus one unbounded channel per watcher. Changes are sent under the lock, so
/// a new watcher's replay and the live events that follow neither overlap nor leave a gap.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    known: BTreeMap<WorkerId, WorkerInfo>,
    watchers: Vec<mpsc::UnboundedSender<WorkerEvent>>,
}

impl State {
    fn send(&mut self, event: &WorkerEvent) {
        self.watchers.retain(|w| w.send(event.clone()).is_ok());
    }
}

impl Fanout {
    /// A stream that first replays `Up` for every known worker, then follows changes.
    pub(crate) fn subscribe(&self) -> BoxStream<'static, WorkerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.state.lock();
        for info in state.known.values() {
            // The receiver is alive: it is in our hands.
            let _ = tx.send(WorkerEvent::Up(info.clone()));
        }
        state.watchers.push(tx);
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .boxed()
    }

    /// Records `info` and sends `Up` unless the worker is already known exactly so.
    pub(crate) fn up(&self, info: WorkerInfo) -> bool {
        let mut state = self.state.lock();
        if state.known.get(&info.id) == Some(&info) {
            return false;
        }
        state.known.insert(info.id.clone(), info.clone());
        state.send(&WorkerEvent::Up(info));
        true
    }

    /// Forgets `id` and sends `Down` if it was known.
    pub(crate) fn down(&self, id: &WorkerId) -> bool {
        let mut state = self.state.lock();
        if state.known.remove(id).is_none() {
            return false;
        }
        state.send(&WorkerEvent::Down(id.clone()));
        true
    }

    /// The workers known now.
    pub(crate) fn snapshot(&self) -> Vec<WorkerInfo> {
        self.state.lock().known.values().cloned().collect()
    }
}
