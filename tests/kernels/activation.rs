//! GELU (tanh) and SiLU, forward and backward, against the f64 reference at odd sizes with
//! poisoned outputs, including saturated inputs; the backward also against central finite
//! differences of the forward; bad input.

use crate::common;
use common::{assert_close, assert_refused, gpu, Rand};
use imba::kernels::{Activation, ActivationArgs, ActivationBackwardArgs, ActivationKernels, Write};
use imba::reference::activation as ra;

fn forward_ref(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Gelu => ra::gelu(x),
        Activation::Silu => ra::silu(x),
    }
}

fn grad_ref(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Gelu => ra::gelu_grad(x),
        Activation::Silu => ra::silu_grad(x),
    }
}

/// Inputs in [-8, 8] with saturated and special values mixed in.
fn inputs(r: &mut Rand, n: usize) -> Vec<f32> {
    let mut x = r.vec(n, -8.0, 8.0);
    for (i, v) in [0.0, -0.0, 60.0, -60.0, 100.0, -100.0, 1e-7, -3.0]
        .into_iter()
        .enumerate()
    {
        if i < n {
            x[(i * 7919) % n] = v;
        }
    }
    x
}

#[test]
fn activations_match_reference_forward_and_backward() {
    let g = gpu();
    let dev = &g.device;
    let k = ActivationKernels::new(dev).unwrap();
    let mut r = Rand::new(5);
    for act in [Activation::Gelu, Activation::Silu] {
        for n in [1usize, 7, 255, 257, 70_001] {
            let x = inputs(&mut r, n);
            let dy = r.vec(n, -1.0, 1.0);
            let dx0 = r.vec(n, -1.0, 1.0);
            let (xb, dyb) = (g.upload("x", &x), g.upload("dy", &dy));
            let y = g.poisoned("y", n);
            let dx = g.poisoned("dx", n);
            let dx_acc = g.upload("dx0", &dx0);
            let mut enc = g.encoder();
            k.record_forward(
                dev,
                &mut enc,
                &ActivationArgs {
                    act,
                    n: n as u32,
                    x: (&xb).into(),
                    y: (&y).into(),
                },
            )
            .unwrap();
            k.record_backward(
                dev,
                &mut enc,
                &ActivationBackwardArgs {
                    act,
                    n: n as u32,
                    x: (&xb).into(),
                    dy: (&dyb).into(),
                    dx: (&dx).into(),
                    write: Write::Overwrite,
                },
            )
            .unwrap();
            k.record_backward(
                dev,
                &mut enc,
                &ActivationBackwardArgs {
                    act,
                    n: n as u32,
                    x: (&xb).into(),
                    dy: (&dyb).into(),
                    dx: (&dx_acc).into(),
                    write: Write::Accumulate,
                },
            )
            .unwrap();
            g.submit_and_wait(enc).unwrap();
            let want_y: Vec<f64> = x.iter().map(|&v| forward_ref(act, v as f64)).collect();
            let want_dx: Vec<f64> = x
                .iter()
                .zip(&dy)
                .map(|(&v, &d)| d as f64 * grad_ref(act, v as f64))
                .collect();
            let want_acc: Vec<f64> = want_dx
                .iter()
                .zip(&dx0)
                .map(|(w, &c)| w + c as f64)
                .collect();
            // f32 exp and division: a few ulps of the larger of |y| and 1.
            let what = format!("{act:?} n={n}");
            assert_close(
                &format!("{what} y"),
                &g.read(&y, n).unwrap(),
                &want_y,
                2e-6,
                2e-6,
            );
            assert_close(
                &format!("{what} dx"),
                &g.read(&dx, n).unwrap(),
                &want_dx,
                2e-6,
                2e-6,
            );
            assert_close(
                &format!("{what} dx accumulated"),
                &g.read(&dx_acc, n).unwrap(),
                &want_acc,
                2e-6,
                2e-6,
            );
        }
    }
}

/// The reference derivatives against central differences of the reference forward (f64), and
/// the GPU backward against the same differences.
#[test]
fn activation_gradients_match_finite_differences() {
    let g = gpu();
    let dev = &g.device;
    let k = ActivationKernels::new(dev).unwrap();
    let x: Vec<f32> = (0..41).map(|i| -6.0 + 0.3 * i as f32 + 0.0137).collect();
    let n = x.len();
    let ones = vec![1.0f32; n];
    for act in [Activation::Gelu, Activation::Silu] {
        let h = 1e-5;
        let fd: Vec<f64> = x
            .iter()
            .map(|&v| {
                let v = v as f64;
                (forward_ref(act, v + h) - forward_ref(act, v - h)) / (2.0 * h)
            })
            .collect();
        for (&v, &d) in x.iter().zip(&fd) {
            let a = grad_ref(act, v as f64);
            assert!(
                (a - d).abs() < 1e-8,
                "{act:?} reference grad at {v}: {a} vs FD {d}"
            );
        }
        let (xb, dyb, dx) = (
            g.upload("x", &x),
            g.upload("dy", &ones),
            g.poisoned("dx", n),
        );
        let mut enc = g.encoder();
        k.record_backward(
            dev,
            &mut enc,
            &ActivationBackwardArgs {
                act,
                n: n as u32,
                x: (&xb).into(),
                dy: (&dyb).into(),
                dx: (&dx).into(),
                write: Write::Overwrite,
            },
        )
        .unwrap();
        g.submit_and_wait(enc).unwrap();
        assert_close(
            &format!("{act:?} GPU grad vs FD"),
            &g.read(&dx, n).unwrap(),
            &fd,
            2e-6,
            2e-6,
        );
    }
}

/// Operands at offsets inside larger buffers (tensors of an arena): only the given ranges are
/// read and written.
#[test]
fn activation_reads_and_writes_regions() {
    let g = gpu();
    let dev = &g.device;
    let k = ActivationKernels::new(dev).unwrap();
    let n = 37;
    let x: Vec<f32> = (0..64 + n).map(|i| (i as f32 - 80.0) / 9.0).collect();
    let xb = g.upload("x arena", &x);
    let yb = g.poisoned("y arena", 128 + n);
    let mut enc = g.encoder();
    let args = ActivationArgs {
        act: Activation::Silu,
        n: n as u32,
        x: imba::kernels::Region::new(&xb, 256),
        y: imba::kernels::Region::new(&yb, 512),
    };
    k.record_forward(dev, &mut enc, &args).unwrap();
    g.submit_and_wait(enc).unwrap();
    let y = g.read::<f32>(&yb, 128 + n).unwrap();
    let want: Vec<f64> = x[64..]
        .iter()
        .map(|&v| v as f64 / (1.0 + (-v as f64).exp()))
        .collect();
    assert_close("silu at an offset", &y[128..], &want, 1e-6, 1e-5);
    assert!(
        y[..128].iter().all(|v| v.is_nan()),
        "wrote before its region"
    );
}

#[test]
fn bad_activation_inputs_are_errors() {
    let g = gpu();
    let dev = &g.device;
    let k = ActivationKernels::new(dev).unwrap();
    let small = g.zeros("small", 16);
    let big = g.zeros("big", 4096);
    let mut enc = g.encoder();
    assert_refused(
        || {
            k.record_forward(
                dev,
                &mut enc,
                &ActivationArgs {
                    act: Activation::Gelu,
                    n: 0,
                    x: (&big).into(),
                    y: (&big).into(),
                },
            )
        },
        "0 values",
    );
    assert_refused(
        || {
            k.record_forward(
                dev,
                &mut enc,
                &ActivationArgs {
                    act: Activation::Silu,
                    n: 64,
                    x: (&small).into(),
                    y: (&big).into(),
                },
            )
        },
        "`x`",
    );
    assert_refused(
        || {
            k.record_backward(
                dev,
                &mut enc,
                &ActivationBackwardArgs {
                    act: Activation::Gelu,
                    n: 64,
                    x: (&big).into(),
                    dy: (&small).into(),
                    dx: (&big).into(),
                    write: Write::Overwrite,
                },
            )
        },
        "`dy`",
    );
    assert_refused(
        || {
            k.record_forward(
                dev,
                &mut enc,
                &ActivationArgs {
                    act: Activation::Gelu,
                    n: 64,
                    x: (&big).into(),
                    y: (&small).into(),
                },
            )
        },
        "`y`",
    );
}
