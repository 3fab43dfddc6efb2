//! Compiles the .proto files with protox (pure Rust, no protoc) and generates prost
//! messages plus the tonic client/server for the delta-xDS stream.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "nantian/xds/v1/delta.proto",
        "nantian/config/v1/config.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Config resources are dumped as JSON by /config_dump and as YAML by the translator's
        // golden tests.
        .type_attribute(".nantian.config.v1", "#[derive(serde::Serialize)]")
        .type_attribute(".nantian.config.v1", "#[serde(rename_all = \"camelCase\")]")
        .field_attribute(
            ".nantian.config.v1.FilterModule.source",
            "#[serde(skip_serializing)]",
        )
        // Private keys stay out of /config_dump and the golden files.
        .field_attribute(
            ".nantian.config.v1.TlsCertificate.private_key_pem",
            "#[serde(skip_serializing)]",
        )
        // And LLM API keys.
        .field_attribute(
            ".nantian.config.v1.AiBackend.auth_value",
            "#[serde(skip_serializing)]",
        )
        // Only rules whose backend is an AIService have one.
        .field_attribute(
            ".nantian.config.v1.Route.ai",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        // Most backends are cleartext: leave the field out of their dumps.
        .field_attribute(
            ".nantian.config.v1.Backend.tls",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        // Most backends and rules have neither: leave them out of their dumps too.
        .field_attribute(
            ".nantian.config.v1.Backend.load_balancing",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        .field_attribute(
            ".nantian.config.v1.Route.session_persistence",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        // And rules without retry.
        .field_attribute(
            ".nantian.config.v1.Route.retry",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        // HTTPRoute rules (most of them) leave the GRPCRoute fields out of their dumps.
        .field_attribute(
            ".nantian.config.v1.Route.kind",
            "#[serde(skip_serializing_if = \"String::is_empty\")]",
        )
        .field_attribute(
            ".nantian.config.v1.RouteMatch.grpc_method",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        // Only token limits keep their counters in a named (possibly shared) store.
        .field_attribute(
            ".nantian.config.v1.WasmFilter.counters",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        // A Redis URL may carry a password: kept out of dumps, like API keys.
        .field_attribute(
            ".nantian.config.v1.CounterStore.redis_url",
            "#[serde(skip_serializing)]",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
