//! The worker's side of `ExecuteStream`: the coordinator's tasks as messages on one long-lived
//! stream, each run exactly as a unary `Execute` call with the same request (same validation,
//! slot, deadline, metrics and logs), its answer sent back with the call's id.
//!
//! What the unary path gets from gRPC, each call gets here by hand: the slot gate (a slot before
//! the task is prepared; none within the task timeout, or draining: `RESOURCE_EXHAUSTED`), the
//! call's deadline (the coordinator's `timeout_ms`, capped as the server caps `grpc-timeout`), and
//! cancellation: a cancel message, or the stream breaking (the coordinator went away), drops the
//! task's future, which kills the task, as dropping a unary call does.

use crate::service::WorkerState;
use hybridgrid_transport::pb::{self, execute_stream_request::Kind};
use parking_lot::Mutex;
use prost::Message;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tonic::{Status, Streaming};

/// How much longer than the task timeout a call may take before the server ends it (the same
/// bound the gRPC server puts on every request).
pub(crate) const REQUEST_GRACE: Duration = Duration::from_secs(30);

/// The answers the worker sends on one stream.
pub type ResponseStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ExecuteStreamResponse, Status>> + Send>>;

/// Bounds of one stream, from the worker's config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLimits {
    /// Largest `ExecuteResponse` sent (a larger one fails its call, as a unary reply would).
    pub(crate) max_message_bytes: usize,
    /// Calls in flight on one stream (`worker.concurrency_per_connection`); more are refused as busy.
    pub(crate) calls: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: hybridgrid_transport::MAX_MESSAGE_BYTES,
            calls: 64,
        }
    }
}

/// Serves one stream: reads calls until the coordinator closes it, answering each on the
/// returned stream.
pub(crate) fn serve(
    state: Arc<WorkerState>,
    inbound: Streaming<pb::ExecuteStreamRequest>,
) -> ResponseStream {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(read_calls(state, inbound, tx));
    Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
}

type Out = mpsc::UnboundedSender<Result<pb::ExecuteStreamResponse, Status>>;

/// The calls running on one stream, by call id.
type Running = Arc<Mutex<HashMap<u64, AbortHandle>>>;

async fn read_calls(
    state: Arc<WorkerState>,
    mut inbound: Streaming<pb::ExecuteStreamRequest>,
    out: Out,
) {
    let limits = state.stream_limits();
    let running: Running = Arc::default();
    loop {
        let next = tokio::select! {
            m = inbound.message() => m,
            // The worker stops: no new calls; the stream ends when the running ones have answered.
            _ = state.stopping.cancelled() => break,
            // The coordinator reset the stream: as dropped unary calls, the tasks die.
            _ = out.closed() => {
                abort_all(&running);
                return;
            }
        };
        let m = match next {
            Ok(Some(m)) => m,
            // The coordinator closed its side: the calls running now still answer.
            Ok(None) => break,
            // The stream broke (the coordinator went away): as dropped unary calls, the tasks die.
            Err(_) => {
                abort_all(&running);
                return;
            }
        };
        let call_id = m.call_id;
        match m.kind {
            Some(Kind::Execute(req)) => {
                if let Err(refused) = admit(&state, &running, limits) {
                    let _ = out.send(Ok(answer(call_id, Err(refused), limits)));
                    continue;
                }
                let deadline = call_deadline(&state, m.timeout_ms);
                let (state, out2, running2) = (state.clone(), out.clone(), running.clone());
                let mut calls = running.lock();
                let task = tokio::spawn(async move {
                    let result = run_call(&state, req, deadline).await;
                    running2.lock().remove(&call_id);
                    let _ = out2.send(Ok(answer(call_id, result, limits)));
                });
                calls.insert(call_id, task.abort_handle());
            }
            Some(Kind::Cancel(_)) => {
                if let Some(task) = running.lock().remove(&call_id) {
                    task.abort();
                }
            }
            None => {
                let refused = Status::invalid_argument("malformed message: missing field kind");
                let _ = out.send(Ok(answer(call_id, Err(refused), limits)));
            }
        }
    }
    // No new calls; the running ones answer, unless the coordinator resets the stream first.
    while !running.lock().is_empty() {
        tokio::select! {
            _ = out.closed() => abort_all(&running),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Kills every task running on the stream.
fn abort_all(running: &Running) {
    for (_, task) in running.lock().drain() {
        task.abort();
    }
}

/// Refuses a call as busy while draining or when the stream has its most calls in flight.
fn admit(state: &WorkerState, running: &Running, limits: StreamLimits) -> Result<(), Status> {
    if state.is_draining() {
        return Err(Status::resource_exhausted(
            "the worker is draining and takes no new tasks",
        ));
    }
    if running.lock().len() >= limits.calls {
        return Err(Status::resource_exhausted(format!(
            "{} calls in flight on this stream (worker.concurrency_per_connection); the worker is busy",
            limits.calls
        )));
    }
    Ok(())
}

/// The call's deadline: the coordinator's, capped as the server caps a unary call's.
fn call_deadline(state: &WorkerState, timeout_ms: u64) -> Duration {
    let cap = state.task_timeout().saturating_add(REQUEST_GRACE);
    match timeout_ms {
        0 => cap,
        ms => Duration::from_millis(ms).min(cap),
    }
}

/// One call: a slot as the gate takes it, then the task as a unary call runs it, within `deadline`.
async fn run_call(
    state: &Arc<WorkerState>,
    req: pb::ExecuteRequest,
    deadline: Duration,
) -> Result<pb::ExecuteResponse, Status> {
    let gate = state.slot_gate();
    let run = async {
        let slot = match tokio::time::timeout(gate.wait, gate.slots.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(Status::resource_exhausted(format!(
                    "no free slot within {:?}; the worker is busy",
                    gate.wait
                )));
            }
        };
        state.execute(req, Some(slot)).await
    };
    match tokio::time::timeout(deadline, run).await {
        Ok(result) => result,
        // What the server answers a unary call past its deadline.
        Err(_) => Err(Status::cancelled("Timeout expired")),
    }
}

/// The stream message that ends call `call_id` with `result`.
fn answer(
    call_id: u64,
    result: Result<pb::ExecuteResponse, Status>,
    limits: StreamLimits,
) -> pb::ExecuteStreamResponse {
    let result = result.and_then(|r| {
        let len = r.encoded_len();
        if len > limits.max_message_bytes {
            // What tonic answers for a unary reply over the limit; on the stream it must not
            // reach the encoder, which would end the stream for every call on it.
            Err(Status::out_of_range(format!(
                "Error, encoded message length too large: found {len} bytes, the limit is: {} bytes",
                limits.max_message_bytes
            )))
        } else {
            Ok(r)
        }
    });
    match result {
        Ok(r) => pb::ExecuteStreamResponse {
            call_id,
            response: Some(r),
            status_code: 0,
            status_message: String::new(),
        },
        Err(s) => pb::ExecuteStreamResponse {
            call_id,
            response: None,
            status_code: s.code() as i32,
            status_message: s.message().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_answer_fails_its_call_only() {
        let limits = StreamLimits {
            max_message_bytes: 16,
            calls: 4,
        };
        let big = pb::ExecuteResponse {
            worker_id: "w".repeat(64),
            result: None,
        };
        let m = answer(3, Ok(big), limits);
        assert_eq!(m.call_id, 3);
        assert_eq!(m.status_code, tonic::Code::OutOfRange as i32);
        assert!(m.response.is_none());
        let small = pb::ExecuteResponse {
            worker_id: "w".into(),
            result: None,
        };
        let m = answer(4, Ok(small.clone()), limits);
        assert_eq!((m.status_code, m.response), (0, Some(small)));
    }
}
