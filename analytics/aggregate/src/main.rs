use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = snowlink_aggregate::Cli::parse();
    match snowlink_aggregate::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
