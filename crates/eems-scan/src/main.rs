//! `eems-scan`: see `eems_scan::cli` for the command line.

use eems_scan::app::{self, PasswordSource};
use eems_scan::profile::{self, ParseError};

fn main() {
    let cli = match profile::parse_command_line(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Profile(message)) => {
            eprintln!("eems-scan: {message}");
            std::process::exit(eems_scan::exit::USAGE);
        }
    };
    app::init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eems-scan: cannot start the async runtime: {e}");
            std::process::exit(eems_scan::exit::USAGE);
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
