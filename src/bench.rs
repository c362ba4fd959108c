//! Kernel benchmarks (placeholder module body filled below).
