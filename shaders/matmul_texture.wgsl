// Matmul family, fast path for llvmpipe (Mesa's CPU Vulkan driver, 8-lane subgroups):
// C = op(A)·op(B) (+ bias) (+ C), the same products as `matmul_portable`, which stays the
// fallback and the test reference.
//
// Why textures. llvmpipe turns every storage-buffer load whose address differs per lane into
// a loop over the lanes with two branches per element, about 25 CPU cycles a value (measured:
// a storage-buffer version of the kernel below ran at 4–5 GFLOP/s at 1024³, and its loads
// were the whole cost). A texel load is compiled into a branch-free gather instead, and one
// rgba32float texel brings four values. So the operands are first put into textures (copied,
// or packed by `pack_rows4`, which also applies the operand's layout and pads with zeros), and
// the product reads only textures.
//
// Why read-only *storage* textures, not sampled ones. Mesa 22.3 compiles a sampled
// `textureLoad(t, xy, level)` into a call to a shared fetch function that recomputes the mip
// level's size per lane (about 100 instructions, and every live vector register spilled around
// each call: the JIT code, dumped with gdb, showed six such calls per K-step). A storage-texture
// load has no level and is inlined: about 35 instructions (bounds check, address, four 128-bit
// loads, a 4×8 transpose). Measured in alternation at 1024³: 36–41 vs 27–31 GFLOP/s.
//
// The product kernel (`matmul_texture8`), shaped for llvmpipe (docs/design.md#what-is-fast-where):
//   - a workgroup is one subgroup of 8 lanes; no workgroup memory, no barrier;
//   - it owns 16 rows × 64 columns of C; lane l owns columns 4l..4l+3 and 32+4l..32+4l+3 of
//     every row of the tile, as 2 × 16 vec4 accumulators;
//   - per step of 4 along K, lane l fetches one texel of A for row l and one for row 8+l, and
//     the four texels of B in each of its two column groups (rows k..k+3 of op(B)); each row's
//     A texel reaches every lane by `subgroupBroadcast` (a register shuffle), whose lane index
//     must be a constant — hence the 16 rows written out.
//   Why 64 columns: the A fetches, the broadcasts and the loop's own cost serve twice the
//   multiplies. In the JIT code (dumped with gdb) the K loop went from 4.96 to 4.50 x86
//   instructions per 8-wide multiply (the multiplies and adds are half of them: llvmpipe
//   lowers fma to mul + add, and the 128 accumulator registers live on the stack);
//   at 1024³ it ran faster in 13 of 16 pairs over 8 alternating rounds. A K-step of 8
//   instead of 4 cut that to 3.96 but ran slower (its 4000-instruction loop body), so it is
//   not used.
// Packed layouts (zero-padded, so the product needs no edge checks until the store):
//   A texture: texel (x, y) = op(A)[row_offset + y, 4x..4x+3]; width ⌈K/4⌉, height a multiple of 16;
//   B texture: texel (x, y) = op(B)[y, 4x..4x+3]; width a multiple of 16, height 4⌈K/4⌉.

struct PackParams {
    // op(X) is rows × cols; element (r, c) is src[r·row_stride + c·col_stride].
    rows: u32,
    cols: u32,
    row_stride: u32,
    col_stride: u32,
    // Texel row y holds op(X) row row_offset + y.
    row_offset: u32,
    width: u32,
    height: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> Q: PackParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var packed: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64)
fn pack_rows4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * Q.groups_x + wid.x) * 64u + lid.x;
    if (i >= Q.width * Q.height) {
        return;
    }
    let x = i % Q.width;
    let y = i / Q.width;
    // Branch-free: clamped addresses, zero selected outside op(X) (llvmpipe turns branches
    // around loads into per-lane control flow).
    let r = Q.row_offset + y;
    let base = min(r, Q.rows - 1u) * Q.row_stride;
    let cols = vec4<u32>(4u * x) + vec4<u32>(0u, 1u, 2u, 3u);
    let cc = min(cols, vec4<u32>(Q.cols - 1u)) * Q.col_stride;
    let v = vec4<f32>(src[base + cc.x], src[base + cc.y], src[base + cc.z], src[base + cc.w]);
    let inside = (cols < vec4<u32>(Q.cols)) & vec4<bool>(r < Q.rows);
    textureStore(packed, vec2<u32>(x, y), select(vec4<f32>(0.0), v, inside));
}

struct ProductParams {
    m: u32,
    n: u32,
    // K rounded up to a multiple of 4 (the packed textures are zero past K).
    k4: u32,
    // C row of texel row 0 of the A texture.
    row_offset: u32,
    use_bias: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> P: ProductParams;
@group(0) @binding(1) var a_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var b_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// acc + a.x·b0 + a.y·b1 + a.z·b2 + a.w·b3: one row's share of a step, in K order.
fn step4(acc: vec4<f32>, av: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(av.w), b3, fma(vec4<f32>(av.z), b2, fma(vec4<f32>(av.y), b1, fma(vec4<f32>(av.x), b0, acc))));
}

// Writes one row of the lane's 4 columns: acc + bias (+ C). Stores to a storage buffer cost
// about as much as loads on llvmpipe, so the bias is loaded once per lane (`bias4`), not per row.
fn store_row(tile_row: u32, col0: u32, acc: vec4<f32>, bias4: vec4<f32>) {
    let row = P.row_offset + tile_row;
    if (row >= P.m) {
        return;
    }
    let v = acc + bias4;
    let i = row * P.n + col0;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (col0 + j < P.n) {
            if (P.accumulate == 1u) {
                c[i + j] = c[i + j] + v[j];
            } else {
                c[i + j] = v[j];
            }
        }
    }
}

// The 16 rows × 4 columns a lane owns.
struct Tile {
    c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>,
    c4: vec4<f32>, c5: vec4<f32>, c6: vec4<f32>, c7: vec4<f32>,
    c8: vec4<f32>, c9: vec4<f32>, c10: vec4<f32>, c11: vec4<f32>,
    c12: vec4<f32>, c13: vec4<f32>, c14: vec4<f32>, c15: vec4<f32>,
}

// One K-step of 4 for a tile: rows 0..7 take their A texel from `lo`, rows 8..15 from `hi`
// (lane l holds row l's, resp. row 8+l's), B's four rows k..k+3 are b0..b3. Called from
// subgroup-uniform control flow (the broadcasts need every lane; their lane index must be a
// constant, hence the 16 rows written out).
fn tile_step(t: ptr<function, Tile>, lo: vec4<f32>, hi: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) {
    (*t).c0 = step4((*t).c0, subgroupBroadcast(lo, 0u), b0, b1, b2, b3);
    (*t).c1 = step4((*t).c1, subgroupBroadcast(lo, 1u), b0, b1, b2, b3);
    (*t).c2 = step4((*t).c2, subgroupBroadcast(lo, 2u), b0, b1, b2, b3);
    (*t).c3 = step4((*t).c3, subgroupBroadcast(lo, 3u), b0, b1, b2, b3);
    (*t).c4 = step4((*t).c4, subgroupBroadcast(lo, 4u), b0, b1, b2, b3);
    (*t).c5 = step4((*t).c5, subgroupBroadcast(lo, 5u), b0, b1, b2, b3);
    (*t).c6 = step4((*t).c6, subgroupBroadcast(lo, 6u), b0, b1, b2, b3);
    (*t).c7 = step4((*t).c7, subgroupBroadcast(lo, 7u), b0, b1, b2, b3);
    (*t).c8 = step4((*t).c8, subgroupBroadcast(hi, 0u), b0, b1, b2, b3);
    (*t).c9 = step4((*t).c9, subgroupBroadcast(hi, 1u), b0, b1, b2, b3);
    (*t).c10 = step4((*t).c10, subgroupBroadcast(hi, 2u), b0, b1, b2, b3);
    (*t).c11 = step4((*t).c11, subgroupBroadcast(hi, 3u), b0, b1, b2, b3);
    (*t).c12 = step4((*t).c12, subgroupBroadcast(hi, 4u), b0, b1, b2, b3);
    (*t).c13 = step4((*t).c13, subgroupBroadcast(hi, 5u), b0, b1, b2, b3);
    (*t).c14 = step4((*t).c14, subgroupBroadcast(hi, 6u), b0, b1, b2, b3);
    (*t).c15 = step4((*t).c15, subgroupBroadcast(hi, 7u), b0, b1, b2, b3);
}

fn zero_tile() -> Tile {
    let z = vec4<f32>(0.0);
    return Tile(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
}

// The K loop of a 16 × 64 tile: rows row0..row0+15 of the A texture times texel columns bx
// and bx + 8 of B (lane l owns C columns 4·bx..4·bx+3 in `left`, 32 further in `right`). The
// A texels and their broadcasts serve both halves, halving their cost per product.
struct TilePair {
    left: Tile,
    right: Tile,
}

fn tile_product(row0: u32, bx: u32, lane: u32) -> TilePair {
    var l = zero_tile();
    var r = zero_tile();
    let k4 = P.k4;
    for (var k = 0u; k < k4; k = k + 4u) {
        let lo = textureLoad(a_tex, vec2<u32>(k / 4u, row0 + lane));
        let hi = textureLoad(a_tex, vec2<u32>(k / 4u, row0 + 8u + lane));
        tile_step(&l, lo, hi,
            textureLoad(b_tex, vec2<u32>(bx, k)),
            textureLoad(b_tex, vec2<u32>(bx, k + 1u)),
            textureLoad(b_tex, vec2<u32>(bx, k + 2u)),
            textureLoad(b_tex, vec2<u32>(bx, k + 3u)));
        tile_step(&r, lo, hi,
            textureLoad(b_tex, vec2<u32>(bx + 8u, k)),
            textureLoad(b_tex, vec2<u32>(bx + 8u, k + 1u)),
            textureLoad(b_tex, vec2<u32>(bx + 8u, k + 2u)),
            textureLoad(b_tex, vec2<u32>(bx + 8u, k + 3u)));
    }
    return TilePair(l, r);
}

fn lane_bias(col0: u32) -> vec4<f32> {
    var bias4 = vec4<f32>(0.0);
    if (P.use_bias == 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            bias4[j] = bias[min(col0 + j, P.n - 1u)];
        }
    }
    return bias4;
}

@compute @workgroup_size(8)
fn matmul_texture8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wid.y * 16u;
    let bx = wid.x * 16u + lane;
    let t = tile_product(row0, bx, lane);
    store_tile(row0, 4u * bx, t.left);
    store_tile(row0, 4u * bx + 32u, t.right);
}

// The same product written to an rgba32float texture laid out as C's rows (texel (x, y) =
// C[row_offset + y, 4x..4x+3]), which the launcher copies into C with one
// copy_texture_to_buffer: texel stores are branch-free on llvmpipe, unlike storage-buffer
// stores. Only for N a multiple of 64 (whole texels, and 256-byte rows for the copy) and no
// accumulation. Rows past M are written too; the copy leaves them out.
@group(0) @binding(5) var c_tex: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(8)
fn matmul_texture8_to_texture(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wid.y * 16u;
    let bx = wid.x * 16u + lane;
    let t = tile_product(row0, bx, lane);
    store_tile_texture(row0, bx, t.left);
    store_tile_texture(row0, bx + 8u, t.right);
}

// The same kernels for 16-lane subgroups (llvmpipe with LP_NATIVE_VECTOR_WIDTH=512): a
// workgroup is one subgroup of 16 lanes owning 16 rows × 64 columns of C; one A texel per
// lane covers the 16 rows. The B texture's width is then a multiple of 16 texels.
fn tile_product16(row0: u32, bx: u32, lane: u32) -> Tile {
    var t = zero_tile();
    for (var k = 0u; k < P.k4; k = k + 4u) {
        let a = textureLoad(a_tex, vec2<u32>(k / 4u, row0 + lane));
        let b0 = textureLoad(b_tex, vec2<u32>(bx, k));
        let b1 = textureLoad(b_tex, vec2<u32>(bx, k + 1u));
        let b2 = textureLoad(b_tex, vec2<u32>(bx, k + 2u));
        let b3 = textureLoad(b_tex, vec2<u32>(bx, k + 3u));
        t.c0 = step4(t.c0, subgroupBroadcast(a, 0u), b0, b1, b2, b3);
        t.c1 = step4(t.c1, subgroupBroadcast(a, 1u), b0, b1, b2, b3);
        t.c2 = step4(t.c2, subgroupBroadcast(a, 2u), b0, b1, b2, b3);
        t.c3 = step4(t.c3, subgroupBroadcast(a, 3u), b0, b1, b2, b3);
        t.c4 = step4(t.c4, subgroupBroadcast(a, 4u), b0, b1, b2, b3);
        t.c5 = step4(t.c5, subgroupBroadcast(a, 5u), b0, b1, b2, b3);
        t.c6 = step4(t.c6, subgroupBroadcast(a, 6u), b0, b1, b2, b3);
        t.c7 = step4(t.c7, subgroupBroadcast(a, 7u), b0, b1, b2, b3);
        t.c8 = step4(t.c8, subgroupBroadcast(a, 8u), b0, b1, b2, b3);
        t.c9 = step4(t.c9, subgroupBroadcast(a, 9u), b0, b1, b2, b3);
        t.c10 = step4(t.c10, subgroupBroadcast(a, 10u), b0, b1, b2, b3);
        t.c11 = step4(t.c11, subgroupBroadcast(a, 11u), b0, b1, b2, b3);
        t.c12 = step4(t.c12, subgroupBroadcast(a, 12u), b0, b1, b2, b3);
        t.c13 = step4(t.c13, subgroupBroadcast(a, 13u), b0, b1, b2, b3);
        t.c14 = step4(t.c14, subgroupBroadcast(a, 14u), b0, b1, b2, b3);
        t.c15 = step4(t.c15, subgroupBroadcast(a, 15u), b0, b1, b2, b3);
    }
    return t;
}

fn store_tile(row0: u32, col0: u32, t: Tile) {
    let bias4 = lane_bias(col0);
    store_row(row0, col0, t.c0, bias4);
    store_row(row0 + 1u, col0, t.c1, bias4);
    store_row(row0 + 2u, col0, t.c2, bias4);
    store_row(row0 + 3u, col0, t.c3, bias4);
    store_row(row0 + 4u, col0, t.c4, bias4);
    store_row(row0 + 5u, col0, t.c5, bias4);
    store_row(row0 + 6u, col0, t.c6, bias4);
    store_row(row0 + 7u, col0, t.c7, bias4);
    store_row(row0 + 8u, col0, t.c8, bias4);
    store_row(row0 + 9u, col0, t.c9, bias4);
    store_row(row0 + 10u, col0, t.c10, bias4);
    store_row(row0 + 11u, col0, t.c11, bias4);
    store_row(row0 + 12u, col0, t.c12, bias4);
    store_row(row0 + 13u, col0, t.c13, bias4);
    store_row(row0 + 14u, col0, t.c14, bias4);
    store_row(row0 + 15u, col0, t.c15, bias4);
}

fn store_tile_texture(row0: u32, x: u32, t: Tile) {
    let b = lane_bias(4u * x);
    textureStore(c_tex, vec2<u32>(x, row0), t.c0 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 1u), t.c1 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 2u), t.c2 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 3u), t.c3 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 4u), t.c4 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 5u), t.c5 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 6u), t.c6 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 7u), t.c7 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 8u), t.c8 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 9u), t.c9 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 10u), t.c10 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 11u), t.c11 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 12u), t.c12 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 13u), t.c13 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 14u), t.c14 + b);
    textureStore(c_tex, vec2<u32>(x, row0 + 15u), t.c15 + b);
}

@compute @workgroup_size(16)
fn matmul_texture16(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wid.y * 16u;
    let t = tile_product16(row0, wid.x * 16u + lane, lane);
    store_tile(row0, wid.x * 64u + 4u * lane, t);
}

@compute @workgroup_size(16)
fn matmul_texture16_to_texture(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wid.y * 16u;
    let x = wid.x * 16u + lane;
    store_tile_texture(row0, x, tile_product16(row0, x, lane));
}
