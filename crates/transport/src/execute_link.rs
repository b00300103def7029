//! The coordinator's calls to one worker over one long-lived `Worker.ExecuteStream`: every task
//! is a message on that HTTP/2 stream, correlated by call id, instead of an HTTP/2 stream of its
//! own (headers, trailers, the channel's tower stack) per task. A worker without the method
//! (an older release answers UNIMPLEMENTED) gets one unary `Execute` call per task, as before.
//!
//! A call on the stream ends as the unary call would: with the worker's `ExecuteResponse`, or with
//! the status the unary call would have failed with. Dropping a call's future (its deadline
//! passed, the worker was marked down, the client went away) sends a cancel, which the worker
//! treats like a dropped unary call: it kills the task. When the stream breaks, every call in
//! flight on it fails with `UNAVAILABLE` at once, as calls on a lost connection do, and the next
//! call opens a new stream.

use crate::pb;
use crate::shared::execute_shared;
use bytes::BufMut;
use parking_lot::Mutex;
use prost::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The gRPC path of the streaming method.
pub const EXECUTE_STREAM_PATH: &str = "/hybridgrid.v1.Worker/ExecuteStream";

/// Room for the envelope around one `ExecuteRequest` / `ExecuteResponse` (call id, deadline,
/// status) beyond `max_message_bytes`, which bounds the request or response itself.
pub const ENVELOPE_BYTES: usize = 1024;

/// How long a worker that answered UNIMPLEMENTED gets unary calls before the stream is tried
/// again (it may have been upgraded in place).
const REPROBE_AFTER: Duration = Duration::from_secs(300);

/// The result of one call, as a unary `Execute` would return it.
type CallResult = Result<pb::ExecuteResponse, Status>;

/// How a worker is called: [`ExecuteLink::execute`] sends each task over the worker's stream when
/// it has one, else as a unary call. One per worker; cheap to share (`Arc`).
pub struct ExecuteLink {
    channel: Channel,
    max_message_bytes: usize,
    mode: Mutex<Mode>,
    /// Held while a stream is being opened, so concurrent first calls open one, not many.
    opening: tokio::sync::Mutex<()>,
}

enum Mode {
    /// No stream yet (or the last one broke): the next call opens one.
    Untried,
    Stream(Arc<Open>),
    /// The worker has no `ExecuteStream` (it said so at this time).
    Unary(Instant),
}

impl ExecuteLink {
    /// A link over `channel` (the worker's), for requests and replies up to `max_message_bytes`.
    pub fn new(channel: Channel, max_message_bytes: usize) -> Self {
        Self {
            channel,
            max_message_bytes,
            mode: Mutex::new(Mode::Untried),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether calls go over a stream now (`Some(true)`), as unary calls (`Some(false)`), or
    /// that is not known yet (`None`).
    pub fn streaming(&self) -> Option<bool> {
        match &*self.mode.lock() {
            Mode::Stream(o) if !o.calls.is_closed() => Some(true),
            Mode::Unary(_) => Some(false),
            _ => None,
        }
    }

    /// Runs `req` on the worker within `timeout` (the worker is told the deadline, as a unary
    /// call's `grpc-timeout`). Dropping the future cancels the call on the worker.
    pub async fn execute(&self, req: Arc<pb::ExecuteRequest>, timeout: Duration) -> CallResult {
        match self.stream().await? {
            Some(open) => open.call(req, timeout, self.max_message_bytes).await,
            None => {
                execute_shared(self.channel.clone(), req, timeout, self.max_message_bytes).await
            }
        }
    }

    /// The stream to use (`None`: unary calls), opening one if there is none.
    async fn stream(&self) -> Result<Option<Arc<Open>>, Status> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let _opening = self.opening.lock().await;
        if let Some(s) = self.current() {
            return Ok(s);
        }
        match Open::start(self.channel.clone(), self.max_message_bytes).await {
            Ok(open) => {
                *self.mode.lock() = Mode::Stream(open.clone());
                Ok(Some(open))
            }
            Err(s) if s.code() == Code::Unimplemented => {
                tracing::info!(
                    "worker has no ExecuteStream (an older release): one unary Execute call per task"
                );
                *self.mode.lock() = Mode::Unary(Instant::now());
                Ok(None)
            }
            Err(s) => Err(s),
        }
    }

    /// The decided way to call, if there is one.
    fn current(&self) -> Option<Option<Arc<Open>>> {
        match &*self.mode.lock() {
            Mode::Stream(o) if !o.calls.is_closed() => Some(Some(o.clone())),
            Mode::Unary(at) if at.elapsed() < REPROBE_AFTER => Some(None),
            _ => None,
        }
    }
}

/// One open stream: the sending half, the calls waiting for an answer, and (by being dropped)
/// the signal that stops its reader.
struct Open {
    tx: mpsc::UnboundedSender<Outgoing>,
    calls: Arc<Calls>,
    next_id: AtomicU64,
    /// Dropped with the last user of the stream: the reader stops and the stream is reset.
    _stop: oneshot::Sender<()>,
}

/// The calls in flight on a stream, and whether it has ended.
#[derive(Default)]
struct Calls(Mutex<CallsState>);

#[derive(Default)]
struct CallsState {
    waiting: HashMap<u64, oneshot::Sender<CallResult>>,
    /// Why the stream ended, once it has.
    closed: Option<(Code, String)>,
}

impl Calls {
    fn is_closed(&self) -> bool {
        self.0.lock().closed.is_some()
    }

    /// Hands a worker's answer to its call (gone already if the caller gave up).
    fn finish(&self, m: pb::ExecuteStreamResponse) {
        let Some(tx) = self.0.lock().waiting.remove(&m.call_id) else {
            return;
        };
        let result = if m.status_code == 0 {
            Ok(m.response.unwrap_or_default())
        } else {
            Err(Status::new(Code::from(m.status_code), m.status_message))
        };
        let _ = tx.send(result);
    }

    /// Ends the stream: every call still waiting fails with `why`, as on a lost connection.
    fn close(&self, why: String) {
        let waiting = {
            let mut st = self.0.lock();
            st.closed = Some((Code::Unavailable, why.clone()));
            std::mem::take(&mut st.waiting)
        };
        for (_, tx) in waiting {
            let _ = tx.send(Err(Status::unavailable(why.clone())));
        }
    }
}

impl Open {
    /// Opens the stream on `channel` and starts its reader. UNIMPLEMENTED: the worker has none.
    async fn start(channel: Channel, max_message_bytes: usize) -> Result<Arc<Self>, Status> {
        let limit = max_message_bytes.saturating_add(ENVELOPE_BYTES);
        let mut grpc = crate::shared::ready_grpc(channel, limit).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let outgoing = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let path = http::uri::PathAndQuery::from_static(EXECUTE_STREAM_PATH);
        let inbound = grpc
            .streaming(tonic::Request::new(outgoing), path, StreamCodec)
            .await?
            .into_inner();
        let calls = Arc::new(Calls::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(read(inbound, calls.clone(), stop_rx));
        Ok(Arc::new(Self {
            tx,
            calls,
            next_id: AtomicU64::new(1),
            _stop: stop_tx,
        }))
    }

    /// One call on the stream.
    async fn call(
        self: &Arc<Self>,
        req: Arc<pb::ExecuteRequest>,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> CallResult {
        // As tonic refuses an oversized unary request: here it must not reach the stream, whose
        // encoder would fail every call on it.
        let len = req.encoded_len();
        if len > max_message_bytes {
            return Err(Status::out_of_range(format!(
                "Error, encoded message length too large: found {len} bytes, the limit is: {max_message_bytes} bytes"
            )));
        }
        let call_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.calls.0.lock();
            if let Some((code, why)) = &st.closed {
                return Err(Status::new(*code, why.clone()));
            }
            st.waiting.insert(call_id, tx);
        }
        let mut guard = CancelOnDrop {
            open: self,
            call_id,
            armed: true,
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        if self
            .tx
            .send(Outgoing::Execute {
                call_id,
                timeout_ms,
                req,
            })
            .is_err()
        {
            guard.armed = false;
            self.calls.0.lock().waiting.remove(&call_id);
            return Err(Status::unavailable(
                "the execute stream to the worker closed",
            ));
        }
        let result = rx.await;
        guard.armed = false;
        result.unwrap_or_else(|_| {
            Err(Status::unavailable(
                "the execute stream to the worker closed",
            ))
        })
    }
}

/// Cancels a call on the worker when its future is dropped before the answer came.
struct CancelOnDrop<'a> {
    open: &'a Open,
    call_id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let waiting = self.open.calls.0.lock().waiting.remove(&self.call_id);
        if waiting.is_some() {
            let _ = self.open.tx.send(Outgoing::Cancel {
                call_id: self.call_id,
            });
        }
    }
}

/// Reads the worker's answers until the stream ends, breaks, or its last user drops it.
async fn read(
    mut inbound: tonic::Streaming<pb::ExecuteStreamResponse>,
    calls: Arc<Calls>,
    mut stop: oneshot::Receiver<()>,
) {
    let why = loop {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(m)) => calls.finish(m),
                Ok(None) => break "the worker ended its execute stream".to_owned(),
                Err(s) => break format!("the execute stream to the worker broke: {}", s.message()),
            },
            _ = &mut stop => break "the execute stream was closed".to_owned(),
        }
    };
    calls.close(why);
}

/// A message the coordinator sends on the stream (encoded as `pb::ExecuteStreamRequest`, the
/// request straight from its shared copy).
enum Outgoing {
    Execute {
        call_id: u64,
        timeout_ms: u64,
        req: Arc<pb::ExecuteRequest>,
    },
    Cancel {
        call_id: u64,
    },
}

/// Protobuf keys of `ExecuteStreamRequest`'s fields: (field number << 3) | wire type.
const KEY_CALL_ID: u8 = 1 << 3; // varint
const KEY_EXECUTE: u8 = (2 << 3) | 2; // length-delimited
const KEY_CANCEL: u8 = (3 << 3) | 2;
const KEY_TIMEOUT_MS: u8 = 4 << 3;

/// Writes a protobuf varint.
fn put_varint(mut v: u64, dst: &mut impl BufMut) {
    while v >= 0x80 {
        dst.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    dst.put_u8(v as u8);
}

impl Outgoing {
    fn encode(&self, dst: &mut impl BufMut) -> Result<(), prost::EncodeError> {
        match self {
            Outgoing::Execute {
                call_id,
                timeout_ms,
                req,
            } => {
                dst.put_u8(KEY_CALL_ID);
                put_varint(*call_id, dst);
                dst.put_u8(KEY_EXECUTE);
                put_varint(req.encoded_len() as u64, dst);
                req.encode(dst)?;
                if *timeout_ms != 0 {
                    dst.put_u8(KEY_TIMEOUT_MS);
                    put_varint(*timeout_ms, dst);
                }
            }
            Outgoing::Cancel { call_id } => {
                dst.put_u8(KEY_CALL_ID);
                put_varint(*call_id, dst);
                dst.put_u8(KEY_CANCEL);
                dst.put_u8(0);
            }
        }
        Ok(())
    }
}

struct StreamCodec;

struct OutgoingEncoder;

impl Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

impl Codec for StreamCodec {
    type Encode = Outgoing;
    type Decode = pb::ExecuteStreamResponse;
    type Encoder = OutgoingEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::ExecuteStreamResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Arc<pb::ExecuteRequest> {
        Arc::new(pb::ExecuteRequest {
            protocol_version: 1,
            spec: Some(pb::TaskSpec {
                id: "t1".into(),
                command: vec!["gcc".into(), "-c".into()],
                stdin: vec![7; 300],
                ..Default::default()
            }),
            toolchain: None,
        })
    }

    #[test]
    fn outgoing_encodes_as_the_generated_message() {
        for (call_id, timeout_ms) in [(1, 0), (300, 65_000), (u64::MAX, u64::MAX)] {
            let mut buf = Vec::new();
            let req = request();
            Outgoing::Execute {
                call_id,
                timeout_ms,
                req: req.clone(),
            }
            .encode(&mut buf)
            .expect("encode");
            let got = pb::ExecuteStreamRequest::decode(buf.as_slice()).expect("decode");
            assert_eq!(got.call_id, call_id);
            assert_eq!(got.timeout_ms, timeout_ms);
            assert_eq!(
                got.kind,
                Some(pb::execute_stream_request::Kind::Execute((*req).clone()))
            );
        }
        let mut buf = Vec::new();
        Outgoing::Cancel { call_id: 9 }
            .encode(&mut buf)
            .expect("encode");
        let got = pb::ExecuteStreamRequest::decode(buf.as_slice()).expect("decode");
        assert_eq!(got.call_id, 9);
        assert_eq!(
            got.kind,
            Some(pb::execute_stream_request::Kind::Cancel(pb::CancelCall {}))
        );
    }

    #[test]
    fn a_closed_stream_fails_its_waiting_calls_as_unavailable() {
        let calls = Calls::default();
        let (tx, mut rx) = oneshot::channel();
        calls.0.lock().waiting.insert(4, tx);
        calls.close("gone".into());
        assert!(calls.is_closed());
        let got = rx.try_recv().expect("answered");
        assert_eq!(got.err().map(|s| s.code()), Some(Code::Unavailable));
    }

    #[test]
    fn a_worker_status_reaches_its_call() {
        let calls = Calls::default();
        let (tx, mut rx) = oneshot::channel();
        calls.0.lock().waiting.insert(5, tx);
        calls.finish(pb::ExecuteStreamResponse {
            call_id: 5,
            response: None,
            status_code: Code::ResourceExhausted as i32,
            status_message: "busy".into(),
        });
        let got = rx.try_recv().expect("answered");
        assert_eq!(got.err().map(|s| s.code()), Some(Code::ResourceExhausted));
    }
}
