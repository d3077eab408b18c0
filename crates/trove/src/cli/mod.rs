//! The command line: `serve`, the admin verbs and the hidden hook, dispatched from the
//! grammar in [`args`]. `--data-dir` is global, so it may appear anywhere on the command line.

pub mod admin;
pub mod args;
pub mod log_format;
pub mod log_sink;
pub mod maintenance;
pub mod migrate;
pub mod progress;
pub mod seed;
pub mod seed_storage;
pub mod serve;

use crate::config::{Config, ServeOverrides};
use args::{Cli, Command, HookCommand};
use clap::{CommandFactory, FromArgMatches};

/// Parses the command line, runs the command, and says how it went.
pub fn main() -> std::process::ExitCode {
    let env_help: String = std::iter::once("Environment variables:".to_owned())
        .chain(
            crate::config::ENV_VARS
                .iter()
                .map(|(name, what)| format!("  {name:<32} {what}")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let matches = Cli::command().after_long_help(env_help).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // A hook's stderr goes to the pusher's terminal: it prints its verdict and nothing else.
    let default_filter = match cli.command {
        Command::Hook(_) => "off",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TROVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let sink = log_sink_for(&cli.command);
    // Colour codes only on a terminal: never in a log file or a journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .with_ansi(ansi)
        .event_format(log_format::Lines::new(ansi))
        .init();

    // The hook only relays a question to the server and its answer: no runtime.
    if let Command::Hook(HookCommand::PreReceive) = cli.command {
        return crate::http::git::hook::pre_receive();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Command::Serve(args) = cli.command {
        let stopped = runtime.block_on(serve::run(&cli.data_dir, cli.database, cli.git_dir, args));
        // Work still running on the blocking threads (a commit whose client went away)
        // finishes before the runtime is gone; only then may the stop be called clean.
        drop(runtime);
        let result = stopped.and_then(|clean| match clean {
            Some(marker) => marker
                .remove()
                .map_err(|e| anyhow::anyhow!("recording the clean stop: {e}")),
            None => Ok(()),
        });
        sink.finish();
        return exit_code(result);
    }
    let result = runtime.block_on(async move {
        // `--git-dir` of a migration names where the new nodes keep their repositories.
        if let Command::Migrate(args) = cli.command {
            return migrate::run(&cli.data_dir, cli.database, cli.git_dir, args).await;
        }
        // Every other verb acts on the hub the server's configuration names, database
        // included (`[database]` in the data dir's trove.toml, TROVE_DATABASE, --database).
        let config = Config::load(
            &cli.data_dir,
            ServeOverrides {
                database: cli.database,
                git_dir: cli.git_dir,
                ..ServeOverrides::default()
            },
        )?;
        match cli.command {
            Command::Serve(_) | Command::Hook(_) | Command::Migrate(_) => {
                unreachable!("serve, migrate and hooks are dispatched above")
            }
            Command::User(cmd) => {
                admin::run_user(&admin::open_existing_db(&config).await?, cmd).await
            }
            Command::Token(cmd) => {
                admin::run_token(&admin::open_existing_db(&config).await?, cmd).await
            }
            Command::Org(cmd) => {
                admin::run_org(&admin::open_existing_db(&config).await?, cmd).await
            }
            Command::Reindex { repo } => maintenance::reindex(config, repo.as_deref()).await,
            Command::Audit { org, limit } => {
                admin::run_audit(&admin::open_existing_db(&config).await?, org, limit).await
            }
            Command::Gc { dry_run, grace } => {
                maintenance::gc(config, dry_run, grace.as_deref()).await
            }
            Command::Storage(args::StorageCommand::Stats { json }) => {
                maintenance::storage_stats(config, json).await
            }
            Command::Fsck { repair_index } => maintenance::fsck(config, repair_index).await,
            Command::Storage(args::StorageCommand::Migrate) => {
                maintenance::storage_migrate(config).await
            }
            Command::BenchSeedSearch { repos, seed } => seed::run(&config, repos, seed).await,
            Command::BenchSeedStorage {
                xorbs,
                chunks_per_xorb,
                chunk_bytes,
                seed,
            } => {
                let state = maintenance::open_state(config).await?;
                seed_storage::run(&state, xorbs, chunks_per_xorb, chunk_bytes, seed).await
            }
        }
    });
    exit_code(result)
}

/// The server batches its access lines ([`log_sink`]); every other verb writes each line at
/// once. A panic's message comes after the lines that wait.
fn log_sink_for(command: &Command) -> log_sink::LogSink {
    if !matches!(command, Command::Serve(_)) {
        return log_sink::LogSink::immediate();
    }
    let sink = match log_sink::LogSink::batching(crate::http::access_log::TARGET) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("warning: no thread for the access log ({e}): each line written at once");
            return log_sink::LogSink::immediate();
        }
    };
    let before_panic = sink.clone();
    let report_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        before_panic.flush_if_free();
        report_panic(info);
    }));
    sink
}

fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
