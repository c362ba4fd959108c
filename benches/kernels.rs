//! `cargo bench`: the kernel benchmark (fused vs unfused vs CPU reference) on the default
//! adapter. Uses GPU timestamps, so it has its own harness rather than criterion's wall-clock
//! sampling. Set IMBA_BENCH_REPS to change the number of timed runs.

fn main() {
    std::env::set_var(
        "XDG_RUNTIME_DIR",
        std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
    );
    // `cargo bench -- <filter>` passes arguments; `--bench` is cargo's own flag.
    let reps = std::env::var("IMBA_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let gpu = match imba::gpu::Gpu::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    match imba::bench::kernels(&gpu, &imba::bench::default_sizes(), 3, reps) {
        Ok(report) => println!("{}", report.markdown()),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
