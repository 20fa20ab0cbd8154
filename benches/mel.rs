//! Where the log-mel time goes (cargo bench --bench mel).
use std::time::Instant;

fn main() {
    let audio: Vec<f32> = (0..960_000)
        .map(|i| ((i as f32) * 0.01).sin() * 0.3 + ((i * 7919 % 1000) as f32 / 5000.0))
        .collect();
    let mut mel = gstlivetalk::mel::LogMel::new();
    for _ in 0..2 {
        let s = Instant::now();
        let out = mel.compute(&audio);
        println!(
            "compute 60 s: {:.2} ms ({} values)",
            s.elapsed().as_secs_f64() * 1e3,
            out.len()
        );
    }
    let xs: Vec<f32> = (0..480_000).map(|i| 1e-3 + i as f32 * 0.37).collect();
    let s = Instant::now();
    let sum: f32 = xs.iter().map(|x| x.log10()).sum();
    println!(
        "480k log10: {:.2} ms ({sum})",
        s.elapsed().as_secs_f64() * 1e3
    );
    let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(400);
    let mut inp = fft.make_input_vec();
    let mut out = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let s = Instant::now();
    for t in 0..5990 {
        inp.copy_from_slice(&audio[t * 160..t * 160 + 400]);
        fft.process_with_scratch(&mut inp, &mut out, &mut scratch)
            .unwrap();
    }
    println!(
        "5990 FFT-400: {:.2} ms ({})",
        s.elapsed().as_secs_f64() * 1e3,
        out[3].re
    );
}
