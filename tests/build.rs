//! Compiles the conformance gRPC echo service (`proto/grpcecho.proto`) with protox (pure
//! Rust, no protoc): prost messages plus the tonic server the echo backend serves and the
//! client the conformance replay calls it with.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/grpcecho.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
