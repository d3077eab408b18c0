//! `trove`: one binary for the hub server and its admin CLI.

fn main() -> std::process::ExitCode {
    trove::cli::main()
}
