use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = snowlink_analytics::Cli::parse();
    match snowlink_analytics::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted was printed.
        Err(e) if snowlink_analytics::print::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context and its causes.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            if snowlink_analytics::model::is_bad_question(&e) {
                std::process::ExitCode::from(snowlink_events::stats::BAD_QUESTION_EXIT)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
