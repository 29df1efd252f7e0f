#[path = "src/kdc_tools.rs"]
mod kdc_tools;

fn main() {
    kdc_tools::emit_build_cfg();
}
