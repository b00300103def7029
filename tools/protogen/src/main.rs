//! Regenerates the checked-in gRPC code, so normal builds need neither protoc nor a build script.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/transport");
    let proto = root.join("proto/hybridgrid/v1/hybridgrid.proto");
    let fds = protox::compile([&proto], [root.join("proto")])?;
    let out = root.join("src/generated");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out)
        .compile_fds(fds)?;
    println!("wrote {}", out.display());
    Ok(())
}
