//! Generates the client from the committed spec at build time, so it can never drift from
//! it: a change to `openapi/openapi.json` (which a test ties to the server) rebuilds it.

use std::path::Path;

fn main() {
    let spec_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    println!("cargo:rerun-if-changed={}", spec_path.display());
    let text = std::fs::read_to_string(&spec_path).expect("read openapi/openapi.json");
    let spec = serde_json::from_str(&text).expect("openapi/openapi.json is an OpenAPI document");
    let mut generator = progenitor::Generator::default();
    let tokens = generator
        .generate_tokens(&spec)
        .expect("progenitor generates a client from openapi/openapi.json");
    let file = syn::parse2(tokens).expect("the generated client parses");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("client.rs");
    std::fs::write(out, prettyplease::unparse(&file)).expect("write the generated client");
}
