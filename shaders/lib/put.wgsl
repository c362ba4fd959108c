// Writes or adds (`P.accumulate == 1`) a value into `out[i]`. The including file declares
// `P` with an `accumulate` field and the storage array `out`.
fn put(i: u32, v: f32) {
    if (P.accumulate == 1u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}
