// The values that change from one training step to the next, in a uniform of their own
// (`S`, declared by each including shader at its own binding): a trainer writes them into one
// buffer once per step, so that the launches' parameters and bind groups repeat from step to
// step and a steady step makes no GPU objects. A launch without such a buffer gets one made
// from its arguments.
struct StepValues {
    // Philox's second key word.
    step: u32,
    // AdamW's learning rate and bias corrections 1 − β1^t, 1 − β2^t.
    lr: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    // The EMA's decay.
    ema_decay: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
