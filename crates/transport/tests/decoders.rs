//! Every gRPC request decoder over arbitrary bytes: decoding never panics, and whatever decodes
//! converts to core types (or is refused with an error) without panicking. Short in CI
//! (`PROPTEST_CASES` raises it for a longer run).

use hybridgrid_core::{DiscoverySource, TaskSpec};
use hybridgrid_transport::pb;
use proptest::prelude::*;
use prost::Message;

fn exercise(bytes: &[u8]) {
    let _ = pb::InfoRequest::decode(bytes);
    let _ = pb::HeartbeatRequest::decode(bytes);
    let _ = pb::ReportRequest::decode(bytes);
    let _ = pb::MismatchReport::decode(bytes);
    if let Ok(r) = pb::RegisterRequest::decode(bytes)
        && let Some(w) = r.worker
    {
        let _ = w.into_core(DiscoverySource::Registration);
    }
    if let Ok(r) = pb::CompileRequest::decode(bytes)
        && let Some(spec) = r.spec
    {
        let _ = spec.validate();
        let _ = TaskSpec::try_from(spec);
    }
    if let Ok(r) = pb::ExecuteRequest::decode(bytes)
        && let Some(spec) = r.spec
    {
        let _ = TaskSpec::try_from(spec);
    }
    let _ = pb::ExecuteResponse::decode(bytes);
    let _ = pb::CompileResponse::decode(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    /// Mutations of valid messages reach deeper than random bytes.
    #[test]
    fn mutated_valid_messages_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        timeout_ms in any::<u64>(),
        slots in any::<u32>(),
    ) {
        let spec = pb::TaskSpec {
            id: "t".into(),
            command: vec!["gcc".into(), "-c".into(), "x.c".into()],
            inputs: vec![pb::InputFile { path: "preprocessed".into(), contents: b"int x;".to_vec(), executable: false }],
            timeout_ms,
            max_stream_bytes: u64::MAX,
            max_file_bytes: u64::MAX,
            ..Default::default()
        };
        let reg = pb::RegisterRequest {
            protocol_version: 1,
            worker: Some(pb::WorkerInfo {
                id: "w".into(),
                addr: "127.0.0.1:1".into(),
                capabilities: Some(pb::Capabilities { slots, ..Default::default() }),
                protocol_version: 1,
            }),
        };
        let compile = pb::CompileRequest { protocol_version: 1, toolchain: None, spec: Some(spec), client_id: String::new() };
        for mut bytes in [reg.encode_to_vec(), compile.encode_to_vec()] {
            for (i, b) in &flips {
                if !bytes.is_empty() {
                    let n = bytes.len();
                    bytes[i % n] ^= b;
                }
            }
            let n = bytes.len();
            bytes.truncate(cut % (n + 1));
            exercise(&bytes);
        }
    }
}
