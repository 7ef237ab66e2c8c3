//! `mailroom`: parses the command line, sets up logging and hands over to
//! [`relay::cli`], which runs the command and maps its result to an exit
//! code (0 ok, 1 "found something", 2 error).

use std::process::ExitCode;

use clap::Parser as _;
use relay::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    relay::telemetry::init(cli.log_format);
    relay::cli::run(cli)
}
