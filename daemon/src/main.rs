//! The `clearflow` binary: command-line entry point.

fn main() -> std::process::ExitCode {
    clearflow::cli::main()
}
