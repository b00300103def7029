//! Sending one request to several peers without copying it: the coordinator keeps a compile's
//! `ExecuteRequest` (preprocessed text included) behind an `Arc` and encodes it straight from there
//! for each attempt, instead of cloning the spec per worker tried.

use crate::pb;
use prost::Message;
use std::marker::PhantomData;
use std::sync::Arc;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Encodes an `Arc<T>` in place; decodes `U` as prost does.
struct SharedCodec<T, U>(PhantomData<(T, U)>);

struct SharedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SharedEncoder<T> {
    type Item = Arc<T>;
    type Error = Status;

    fn encode(&mut self, item: Arc<T>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

impl<T, U> Codec for SharedCodec<T, U>
where
    T: Message + Send + Sync + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = Arc<T>;
    type Decode = U;
    type Encoder = SharedEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SharedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

/// A gRPC client on a worker's `channel` for messages up to `limit` bytes, once the connection
/// is ready (else `UNAVAILABLE`, naming the cause).
pub(crate) async fn ready_grpc(
    channel: Channel,
    limit: usize,
) -> Result<tonic::client::Grpc<Channel>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    grpc.ready().await.map_err(|e| {
        Status::unavailable(format!(
            "worker connection not ready: {}",
            crate::tls::chain(&e)
        ))
    })?;
    Ok(grpc)
}

/// Calls `Worker.Execute` on `channel` with a shared request, within `timeout` as the call's
/// gRPC deadline (the worker sees it too), accepting replies up to `max_message_bytes`.
pub async fn execute_shared(
    channel: Channel,
    req: Arc<pb::ExecuteRequest>,
    timeout: std::time::Duration,
    max_message_bytes: usize,
) -> Result<pb::ExecuteResponse, Status> {
    let mut grpc = ready_grpc(channel, max_message_bytes).await?;
    let mut request = tonic::Request::new(req);
    request.set_timeout(timeout);
    let path = http::uri::PathAndQuery::from_static("/hybridgrid.v1.Worker/Execute");
    let codec = SharedCodec::<pb::ExecuteRequest, pb::ExecuteResponse>(PhantomData);
    grpc.unary(request, path, codec)
        .await
        .map(tonic::Response::into_inner)
}
