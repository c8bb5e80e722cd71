//! Compiles the protos in `proto/` with protox (pure Rust), so a fresh machine needs no `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/dapr/proto/internals/v1/service_invocation.proto"];
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Bodies travel as `Bytes` so a chunk is handed from socket to socket without a copy.
        .bytes(".")
        .file_descriptor_set_path(out.join("dapr_descriptor.bin"))
        .compile_fds(files)?;
    Ok(())
}
