use clap::Parser;

/// A run allocates and frees millions of small strings per batch (events
/// decoded, grouped, sorted, dropped); mimalloc does that for less than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    snowlink_aggregate::keep_freed_memory();
    let cli = snowlink_aggregate::Cli::parse();
    match snowlink_aggregate::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
