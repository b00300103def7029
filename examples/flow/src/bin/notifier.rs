//! `flow-notifier '{"channel": "console", "message": "..."}'`: delivers a notification.
fn main() {
    hybridgrid_flow_examples::main_with(hybridgrid_flow_examples::notifier::run)
}
