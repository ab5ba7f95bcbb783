//! gauntlet's logits against PyTorch's for the same weights and inputs: the check that
//! `benches/make_resnet20_fashion.py`'s model loads into gauntlet as PyTorch runs it.
//!
//! ```text
//! python benches/make_resnet20_fashion.py logits /tmp/r20 1000   # /tmp/r20/logits.safetensors
//! cargo build --release -p gauntlet-benches --example compare_logits
//! target/release/examples/compare_logits benches/assets/resnet20-fashion.toml \
//!     benches/assets/resnet20-fashion.safetensors /tmp/r20/logits.safetensors
//! ```
//!
//! Arguments: the spec, the weights, and a safetensors file holding `inputs` (f32 in [0, 1],
//! N×C×H×W) and PyTorch's f32 `logits` on them. Prints the largest |gauntlet − torch| over
//! every logit, the largest |logit|, their ratio, and on how many inputs the argmax differs.

use candle_core::{DType, Device};
use gauntlet_models::{Model, Network};

// The same allocator as the gauntlet binary and the benches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, weights, io] = args.as_slice() else {
        return Err("usage: compare_logits SPEC WEIGHTS IO.safetensors".into());
    };
    let network = Network::load(spec.as_ref(), weights.as_ref(), &Device::Cpu)?;
    let io = candle_core::safetensors::load(io, &Device::Cpu)?;
    let inputs = io.get("inputs").ok_or("no `inputs`")?;
    let reference = io
        .get("logits")
        .ok_or("no `logits`")?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?;
    let n = inputs.dim(0)?;
    let mut ours = Vec::with_capacity(n);
    for start in (0..n).step_by(250) {
        let batch = inputs.narrow(0, start, 250.min(n - start))?;
        ours.extend(
            network
                .forward(&batch)?
                .to_dtype(DType::F32)?
                .to_vec2::<f32>()?,
        );
    }
    let (mut worst, mut scale, mut argmax_differs) = (0f32, 0f32, 0);
    for (a, b) in ours.iter().zip(&reference) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
            scale = scale.max(y.abs());
        }
        if argmax(a) != argmax(b) {
            argmax_differs += 1;
        }
    }
    println!(
        "{n} inputs: max |gauntlet - torch| = {worst:.3e}, largest |logit| = {scale:.3}, \
         relative {:.3e}, argmax differs on {argmax_differs}",
        worst / scale
    );
    Ok(())
}
