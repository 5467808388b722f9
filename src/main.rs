//! The `hls-flow` binary: all it does is hand over to the library's command line.

fn main() -> std::process::ExitCode {
    hls_flow::cli::main()
}
