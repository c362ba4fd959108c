//! The roofline's counts on a model small enough to count by hand.

use imba::model::{DitConfig, Peaks, Roofline};

/// 4×4 single-channel images, patch 2 (N = 4 tokens of K = 4 values), D = 8, one block,
/// 2 heads, MLP 32, batch 1 (R = 2 rows in the dual forward).
fn small() -> DitConfig {
    DitConfig {
        height: 4,
        width: 4,
        channels: 1,
        patch: 2,
        dim: 8,
        depth: 1,
        heads: 2,
        mlp_ratio: 4,
        num_labels: 3,
        label_slots: 1,
    }
}

#[test]
fn roofline_counts_match_a_hand_count() {
    let peaks = Peaks {
        flops: 1e3,
        bytes: 1e3,
    };
    let r = Roofline::new(&small(), 1, peaks);
    let family = |name: &str| {
        r.families
            .iter()
            .find(|f| f.family == name)
            .unwrap()
            .clone()
    };
    // Forward 2MKN per product, then dW (all) and dX (all but the two input-side ones):
    // patch (4,4,8) 256·2; t-MLP (1,256,8) 4096·2 and (1,8,8) 128·3; final adaLN (2,8,16)
    // 512·3; final linear (8,8,4) 512·3; block adaLN (2,8,48) 1536·3, qkv (8,8,24) 3072·3,
    // proj (8,8,8) 1024·3, fc1 (8,8,32) 4096·3, fc2 (8,32,8) 4096·3.
    let mm = family("matmul");
    assert_eq!(mm.flops, 53632.0);
    // Attention: 4·R·N²·D forward, 14·R·N²·D backward.
    let at = family("attention");
    assert_eq!(at.flops, 1024.0 + 3584.0);
    // Forward: qkv 192, O 64, lse 16 values; backward: qkv, O, dO, dqkv, lse, δ.
    assert_eq!(at.bytes, 4.0 * 272.0 + 4.0 * 544.0);
    // Each product moves MK + KN + MN values (the same for its backward's two products):
    // 80·2 + 2312·2 + 80·3 + 176·3 + 128·3 + 496·3 + 448·3 + 192·3 + 576·3 + 576·3.
    assert_eq!(mm.bytes, 4.0 * 12800.0);
    let sum: f64 = r.families.iter().map(|f| f.bound_s).sum();
    assert!((r.bound_s() - sum).abs() < 1e-12);
    for f in &r.families {
        assert!(
            f.bound_s >= f.flops.max(f.bytes) / 1e3 - 1e-9,
            "{}",
            f.family
        );
        assert!(
            f.bound_s <= (f.flops + f.bytes) / 1e3 + 1e-9,
            "{}",
            f.family
        );
    }
    let text = r.to_string();
    assert!(
        text.contains("| matmul | 0.00 |") && text.contains("| step |"),
        "{text}"
    );
}
