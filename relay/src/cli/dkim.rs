//! `mailroom dkim keygen`.

use std::path::PathBuf;

use clap::Subcommand;

use super::Done;
use crate::delivery::dkim::{self, Algorithm};

#[derive(Subcommand)]
pub(super) enum Command {
    /// Generate a signing key and print the DNS record to publish.
    Keygen {
        #[arg(long)]
        domain: String,
        #[arg(long)]
        selector: String,
        #[arg(long, value_enum, default_value_t = Algorithm::Ed25519)]
        algorithm: Algorithm,
        /// Where to write the private key (PEM); never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(super) fn run(command: Command) -> anyhow::Result<Done> {
    let Command::Keygen {
        domain,
        selector,
        algorithm,
        out,
    } = command;
    let key = dkim::generate(&domain, &selector, algorithm)?;
    dkim::write_private_key(&out, &key.private_pem)?;
    println!("Private key written to {}", out.display());
    println!("Publish this DNS TXT record:");
    println!("{}", key.dns_name);
    println!("{}", key.dns_value);
    Ok(Done::Clean)
}
