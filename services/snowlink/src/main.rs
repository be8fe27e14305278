fn main() -> std::process::ExitCode {
    let cli = snowlink::cli::Cli::from_env();
    match snowlink::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
