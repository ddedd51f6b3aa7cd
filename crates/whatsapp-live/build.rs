//! Generates the protobuf types of whatsapp-rust's blob encodings
//! (`src/wire.rs`) from the descriptor its SQLite store compiles.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/wire.desc");
    let out_dir = std::env::var("OUT_DIR")?;
    buffa_build::Config::new()
        .descriptor_set("proto/wire.desc")
        .files(&["wire.proto"])
        .preserve_unknown_fields(false)
        .generate_views(false)
        .out_dir(&out_dir)
        .compile()
}
