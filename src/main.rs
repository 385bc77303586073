use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    latchkey::logging::init();
    latchkey::cli::run(latchkey::cli::Cli::parse())
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
/// every blocking-pool thread under load does: measured, that took peak RSS from about
/// 60 MiB to over 130 MiB without any gain in throughput. Two arenas serve two cores.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator tunable; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
