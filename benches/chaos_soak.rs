//! The chaos soak's long mode: 10,000 events by default (`BACKSTOP_SOAK_EVENTS`,
//! `BACKSTOP_SOAK_SEED` change it), printing the counts; exits non-zero on any invariant
//! violation. Under `cargo test` (no `--bench`) it runs a 200-event smoke so the harness
//! cannot rot. `cargo bench --bench chaos_soak`.

#[path = "../tests/it/soak/mod.rs"]
mod soak;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| {
        v.strip_prefix("0x")
            .map_or_else(|| v.parse().ok(), |hex| u64::from_str_radix(hex, 16).ok())
    })
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let events = env("BACKSTOP_SOAK_EVENTS").unwrap_or(if smoke { 200 } else { 10_000 });
    let seed = env("BACKSTOP_SOAK_SEED").unwrap_or(0x5EED_2026_1124);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = std::time::Instant::now();
    let report = runtime.block_on(soak::run(seed, events));
    println!("{}", report.render());
    println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
