fn main() {
    let gpu = imba::gpu::Gpu::new().unwrap();
    let k = imba::kernels::NoiseKernels::new(&gpu.device).unwrap();
    let timer = imba::gpu::GpuTimer::new(&gpu).unwrap();
    let n = 1u32 << 20;
    let out = gpu.zeros("o", n as u64 * 16);
    for (name, words) in [("normals", false), ("philox_words", true)] {
        let mut v = vec![];
        for _ in 0..8 {
            let mut enc = gpu.encoder();
            timer.start(&mut enc);
            if words { k.record_philox_words(&gpu.device, &mut enc, 1, 2, 0, n / 4, &out).unwrap(); }
            else { k.record_normals(&gpu.device, &mut enc, 1, 2, n, &out).unwrap(); }
            timer.stop(&mut enc);
            gpu.submit_and_wait(enc).unwrap();
            v.push(timer.elapsed_ns(&gpu).unwrap() / 1e6);
        }
        v.sort_by(f64::total_cmp);
        println!("{name}: {:.2} ms for 2^20 elements (2^18 philox calls)", v[4]);
    }
}
