//! Compiles the protos in `proto/` with protox (pure Rust), so a fresh machine needs no `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/dapr/proto/internals/v1/service_invocation.proto",
        "proto/dapr/proto/runtime/v1/appcallback.proto",
        "proto/dapr/proto/runtime/v1/dapr.proto",
        "proto/dapr/proto/sentry/v1/sentry.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Written by us: code generation from an in-memory descriptor set does not write it, and
    // gRPC server reflection serves it.
    std::fs::write(
        out.join("dapr_descriptor.bin"),
        prost::Message::encode_to_vec(&files),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Bodies travel as `Bytes` so a chunk is handed from socket to socket without a copy.
        .bytes(".")
        .compile_fds(files)?;
    compile_test_protos()
}

/// The echo service of the gRPC proxying tests and benchmark. Only `tests/` and `benches/`
/// include the generated code; the library never does.
fn compile_test_protos() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=tests/protos");
    let files = protox::compile(["tests/protos/echo.proto"], ["tests/protos"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .compile_fds(files)?;
    Ok(())
}
