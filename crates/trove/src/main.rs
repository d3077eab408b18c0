//! `trove`: one binary for the hub server and its admin CLI.

/// mimalloc rather than glibc's malloc: a small download allocates and frees a few dozen
/// small blocks across the runtime's threads, and glibc's `malloc`/`free` (with
/// `malloc_consolidate`) were about a tenth of the server's CPU per request. Measured in
/// docs/benchmarks.md ("Where a small file's request goes", the sixth round), with its effect
/// on idle memory: none once its arenas are kept off transparent huge pages (the `no_thp`
/// feature, in the workspace manifest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[expect(
    unsafe_code,
    reason = "trove_git::ignore_user_config must run before any other thread exists"
)]
fn main() -> std::process::ExitCode {
    // SAFETY: this is the first statement of the process's `main`: no thread other than this
    // one has been started (the async runtime, the logger and every pool are made later, in
    // `cli::main`), so nothing can call libgit2 while its search paths are written.
    if let Err(e) = unsafe { trove_git::ignore_user_config() } {
        eprintln!("error: cannot set libgit2 up: {e}");
        return std::process::ExitCode::FAILURE;
    }
    trove::cli::main()
}
