// Positions of flat (B,C,H,W) indices in an image cut into p×p patches: sample b, channel
// c, pixel (h, w), patch (th, tw) and offset (i, j) inside it. Decoding costs eight
// divisions, which llvmpipe (and GPUs without a vector integer divide) runs lane by lane, so
// kernels that visit consecutive flat indices decode once and then step with carries.

struct ImagePos {
    b: u32,
    c: u32,
    h: u32,
    w: u32,
    th: u32,
    i: u32,
    tw: u32,
    j: u32,
}

fn image_pos(idx: u32, channels: u32, height: u32, width: u32, p: u32) -> ImagePos {
    var q: ImagePos;
    q.w = idx % width;
    let r = idx / width;
    q.h = r % height;
    let r2 = r / height;
    q.c = r2 % channels;
    q.b = r2 / channels;
    q.th = q.h / p;
    q.i = q.h % p;
    q.tw = q.w / p;
    q.j = q.w % p;
    return q;
}

// The position of flat index + 1 (p divides height and width).
fn image_pos_next(pos: ImagePos, channels: u32, height: u32, width: u32, p: u32) -> ImagePos {
    var q = pos;
    q.w = q.w + 1u;
    q.j = q.j + 1u;
    if (q.j == p) {
        q.j = 0u;
        q.tw = q.tw + 1u;
    }
    if (q.w == width) {
        q.w = 0u;
        q.tw = 0u;
        q.j = 0u;
        q.h = q.h + 1u;
        q.i = q.i + 1u;
        if (q.i == p) {
            q.i = 0u;
            q.th = q.th + 1u;
        }
        if (q.h == height) {
            q.h = 0u;
            q.th = 0u;
            q.i = 0u;
            q.c = q.c + 1u;
            if (q.c == channels) {
                q.c = 0u;
                q.b = q.b + 1u;
            }
        }
    }
    return q;
}
