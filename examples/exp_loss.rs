use imba::kernels::*;
fn main() {
    let gpu = imba::gpu::Gpu::new().unwrap();
    let dev = &gpu.device;
    let k = LossKernels::new(dev).unwrap();
    let timer = imba::gpu::GpuTimer::new(&gpu).unwrap();
    let geometry = ImageGeometry { batch: 256, channels: 4, height: 32, width: 32, patch: 2 };
    let s = geometry.token_shape();
    let nk = s.elements();
    let data: Vec<f32> = (0..nk).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let pc = gpu.upload("pc", &data);
    let pu = gpu.upload("pu", &data.iter().map(|x| x * 0.5).collect::<Vec<_>>());
    let tg = gpu.upload("t", &data.iter().map(|x| x * 0.25).collect::<Vec<_>>());
    let (w, gc, gu, sc) = (gpu.zeros("w", s.rows() * 4), gpu.zeros("gc", nk * 4), gpu.zeros("gu", nk * 4), gpu.zeros("s", 16));
    let ws = k.workspace(dev, s).unwrap();
    for (name, philox, gamma) in [("explicit γ=.8", false, 0.8), ("explicit γ=0", false, 0.0), ("philox γ=.8", true, 0.8), ("philox γ=0", true, 0.0)] {
        let target = if philox { Target::Philox { seed: 1, step: 2, geometry, kind: TargetKind::Epsilon, x0: None } } else { Target::Explicit(&tg) };
        let args = ImbaLossArgs { shape: s, pred_cond: &pc, pred_uncond: &pu, target, weights: &w, grad_cond: &gc, grad_uncond: &gu, scalars: &sc, workspace: &ws };
        let p = ImbaParams { gamma, ..Default::default() };
        let mut v = vec![];
        for _ in 0..8 {
            let mut enc = gpu.encoder();
            timer.start(&mut enc);
            k.record_imba(dev, &mut enc, &args, &p).unwrap();
            timer.stop(&mut enc);
            gpu.submit_and_wait(enc).unwrap();
            v.push(timer.elapsed_ns(&gpu).unwrap() / 1e6);
        }
        v.sort_by(f64::total_cmp);
        println!("{name}: {:.2} ms", v[4]);
    }
}
