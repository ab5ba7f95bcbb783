//! The `gauntlet` binary: parse arguments, run, map the outcome to an exit code
//! (0 passed, 1 a gate or sanity check failed, 2 could not run).

use std::process::ExitCode;

use clap::Parser;
use gauntlet::cli::{Cli, LogFormat};

// candle allocates a fresh buffer per op; mimalloc keeps that off the kernel's mmap path
// (about 1.6× on FGSM/PGD, see benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let log_format = cli.log_format();
    match gauntlet::commands::dispatch(cli) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            if log_format == LogFormat::Json {
                let causes: Vec<String> = error
                    .chain()
                    .skip(1)
                    .map(|cause| cause.to_string())
                    .collect();
                let line = gauntlet::progress::event_line(
                    "error",
                    std::time::SystemTime::now(),
                    None,
                    serde_json::json!({ "message": error.to_string(), "causes": causes, "exit_code": 2 }),
                );
                eprintln!("{line}");
                return ExitCode::from(2);
            }
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
