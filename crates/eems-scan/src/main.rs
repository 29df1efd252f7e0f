//! `eems-scan`: see `eems_scan::cli` for the command line.

use clap::Parser;
use eems_scan::app::{self, PasswordSource};
use eems_scan::cli::Cli;

fn main() {
    let cli = Cli::parse();
    app::init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eems-scan: cannot start the async runtime: {e}");
            std::process::exit(app::EXIT_USAGE);
        }
    };
    let code = match runtime.block_on(app::run(cli, PasswordSource::Interactive)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("eems-scan: {}", failure.message);
            failure.code
        }
    };
    // In-flight clean-up already ran; do not wait for stray tasks.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
