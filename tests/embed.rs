//! Runs `examples/embed.rs` (an engine with its own device, buffers and encoder) and checks
//! its loss against the CPU reference.

#[path = "../examples/embed.rs"]
mod embed;

use imba::kernels::ImbaParams;
use imba::reference::loss;

#[test]
fn embedding_example_runs_and_matches_reference() {
    std::env::set_var(
        "XDG_RUNTIME_DIR",
        std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
    );
    let r = embed::run().unwrap_or_else(|e| panic!("{e}"));
    let want = loss::imba(
        r.shape,
        &loss::widen(&r.pred_cond),
        &loss::widen(&r.pred_uncond),
        &loss::widen(&r.noise),
        &ImbaParams::default(),
    );
    for (g, w) in r
        .scalars
        .iter()
        .zip([want.loss, want.loss_cond, want.loss_uncond, want.mean_d])
    {
        assert!((*g as f64 - w).abs() <= 1e-5 * w.abs(), "got {g}, want {w}");
    }
}
