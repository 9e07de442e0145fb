//! parley-load: the load generator for Parley (placeholder until its own issue lands).

fn main() -> std::process::ExitCode {
    eprintln!(
        "parley-load {}: the scenarios are not built yet; see the README's Load testing section",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
