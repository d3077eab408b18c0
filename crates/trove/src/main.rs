//! `trove`: one binary for the hub server and its admin CLI.

/// mimalloc rather than glibc's malloc: a small download allocates and frees a few dozen
/// small blocks across the runtime's threads, and glibc's `malloc`/`free` (with
/// `malloc_consolidate`) were about a tenth of the server's CPU per request. Measured in
/// docs/benchmarks.md ("Where a small file's request goes", the sixth round), with its effect
/// on idle memory: none once its arenas are kept off transparent huge pages (the `no_thp`
/// feature, in the workspace manifest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h, v2 and v3), which the
/// crate does not name: the option just before `mi_option_use_numa_nodes` in both versions'
/// enum, taken from the crate's number for that one rather than written as a literal, so
/// that it follows a vendored mimalloc that renumbers its options.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Freed memory goes back to the system as soon as a page of it is free, rather than a
/// second later (mimalloc 3's default delay, and only when the thread that freed it
/// allocates again): a thread that goes quiet after a large upload otherwise keeps what it
/// freed resident. `MIMALLOC_PURGE_DELAY` in the environment still overrides it. Measured in
/// docs/benchmarks.md ("Memory aims of issue #17, re-measured"): peak RSS over idle during
/// a 2 GiB LFS upload 48 → 35 MiB, during a Xet one 57 → 37 MiB.
#[expect(unsafe_code, reason = "mi_option_set only stores an option's value")]
fn purge_freed_memory_at_once() {
    // mimalloc read its environment when the process was loaded; an operator's value wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set writes the option's slot in mimalloc's option table (the index is
    // checked against the table's length) and the delay is read at each purge, so a new value
    // is sound at any time; it is not thread safe, and this runs at the start of `main`,
    // before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

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
    purge_freed_memory_at_once();
    trove::cli::main()
}
