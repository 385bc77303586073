use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    latchkey::logging::init();
    latchkey::cli::run(latchkey::cli::Cli::parse())
}
