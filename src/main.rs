//! The `hls-flow` binary: all it does is hand over to the library's command line, with
//! jemalloc as the allocator (of the Rust code and, where the platform allows, of the C
//! libraries too). With glibc's malloc a two-year run of small days spent ~25 % of its CPU
//! in malloc and free and kept ~50 MB more in per-thread arenas (`cargo bench --bench engine`).

#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    hls_flow::cli::main()
}
