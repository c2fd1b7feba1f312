//! Generates the gRPC code from `proto/` with the vendored protoc, so no system protoc is needed.
//!
//! Each package is compiled on its own, so that the descriptor set served by server reflection
//! on the client port holds the public `raftlog.v1` package only: the internal transport is
//! served on the peer port, and reflection must not list what the client port does not serve.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    // Read at run time, not with env!(): a build script compiled for another checkout that
    // shares this target directory would otherwise look for the protos there.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let public = root.join("raftlog/v1/raftlog.proto");
    let internal = root.join("raftlog/internal/transport.proto");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("raftlog_v1_descriptor.bin"))
        .compile_protos(std::slice::from_ref(&public), std::slice::from_ref(&root))?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(std::slice::from_ref(&internal), std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", public.display());
    println!("cargo:rerun-if-changed={}", internal.display());
    Ok(())
}
