//! `flow-secret-scanner '{"path": "/workspace"}'`: reports secrets committed under `path`.
fn main() {
    hybridgrid_flow_examples::main_with(hybridgrid_flow_examples::scanner::run)
}
