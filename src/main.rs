//! The provider binary: started by Terraform, speaks the plugin protocol until shut down.

use std::process::ExitCode;

use terraform_provider_valkey::provider::ValkeyProvider;
use terraform_provider_valkey::runtime::docker::ssh_state::SshStateDir;
use terraform_provider_valkey::tfplug::{logging, server};

fn main() -> ExitCode {
    // Everything this process and the nodes it starts create (configs, data, RDB snapshots,
    // logs) is readable by the owner only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    logging::init();
    let _ssh_state = SshStateDir::claim();
    let provider = match ValkeyProvider::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("terraform-provider-valkey: internal schema error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("terraform-provider-valkey: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::serve(provider)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
