//! Generates the gRPC stubs for the Terraform plugin protocol from the vendored .proto files,
//! with the protoc binary that ships inside the `protoc-bin-vendored` crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                std::path::PathBuf::from("proto/tfplugin6.proto"),
                "proto/go_plugin.proto".into(),
                "proto/health.proto".into(),
            ],
            &[std::path::PathBuf::from("proto"), include],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
