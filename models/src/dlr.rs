//! The Difference of Logits Ratio (DLR) losses of Croce & Hein (ICML 2020), untargeted and
//! targeted.
//!
//! Cross-entropy and the CW margin change when the logits are shifted (cross-entropy only by
//! scale) or rescaled, so a model whose logits are huge or squashed can make a gradient attack
//! stall without being robust. DLR divides a margin by the spread of the top logits, so it is
//! invariant to shifting all logits by a constant and to multiplying them by a positive
//! constant, and it is what APGD-DLR and APGD-T follow. With `z` sorted descending as
//! `z_π1 ≥ z_π2 ≥ …`:
//!
//! - untargeted, label `y` (ascended): `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12)`;
//! - targeted, target `t` (descended): `(max_{j≠t} z_j − z_t) / (z_π1 − ½(z_π3 + z_π4) + 1e-12)`.
//!
//! The targeted form's numerator is the CW margin toward the target, where the paper writes
//! `z_y − z_t` with the true class `y`: a [`Loss`] sees one label per sample, and for a
//! correctly classified input the two agree until some third class overtakes `y`, where the
//! margin form keeps pushing the class that actually stands between the input and its target.
//! With fewer classes than the denominator names, the missing ranks are the last class
//! (`π3 → π2` with two classes, `π4 → π3` with three), so the loss is defined for every model
//! instead of failing on small ones.
//!
//! Ranks are picked once per sample on the host, ties going to the lower class index and a NaN
//! logit ranking first (so a NaN propagates into the loss); the candle path gathers the picked
//! logits (differentiable) and the native path uses the same picks, so both give the same
//! gradient even at ties.

use candle_core::{DType, Tensor};

use crate::{Loss, ModelError};

/// The constant of the denominators, as in the reference implementation.
pub const DLR_EPSILON: f64 = 1e-12;

/// The classes one sample's DLR reads: `(labelled, other, π1, π3, π4)`.
///
/// `labelled` is the label (true class or target), `other` the largest other logit's class
/// (the label itself when there is no other class).
pub(crate) fn dlr_picks(logits: &[f64], label: usize) -> [usize; 5] {
    let classes = logits.len();
    // Descending, NaN first, ties to the lower index.
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by(|&a, &b| {
        let (za, zb) = (logits[a], logits[b]);
        match (za.is_nan(), zb.is_nan()) {
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => zb
                .partial_cmp(&za)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b)),
        }
    });
    let rank = |r: usize| order[r.min(classes.saturating_sub(1))];
    let other = order.iter().copied().find(|&j| j != label).unwrap_or(label);
    [label, other, rank(0), rank(2), rank(3)]
}

/// One sample's DLR loss (`loss` is [`Loss::Dlr`] or [`Loss::DlrTargeted`]) on f32 logits;
/// writes ∂loss/∂logits into `gradient`. The native path's closed form.
pub(crate) fn loss_and_logit_gradient(
    loss: Loss,
    logits: &[f32],
    label: usize,
    gradient: &mut [f32],
) -> f32 {
    let wide: Vec<f64> = logits.iter().map(|&z| f64::from(z)).collect();
    let [labelled, other, p1, p3, p4] = dlr_picks(&wide, label);
    gradient.fill(0.0);
    let z = |k: usize| logits[k];
    let epsilon = DLR_EPSILON as f32;
    match loss {
        Loss::Dlr => {
            // L = −m / d, m = z_y − z_o, d = z_π1 − z_π3 + ε.
            let m = z(labelled) - z(other);
            let d = z(p1) - z(p3) + epsilon;
            gradient[labelled] -= 1.0 / d;
            gradient[other] += 1.0 / d;
            gradient[p1] += m / (d * d);
            gradient[p3] -= m / (d * d);
            -m / d
        }
        _ => {
            // L = m / d, m = z_o − z_t, d = z_π1 − ½(z_π3 + z_π4) + ε.
            let m = z(other) - z(labelled);
            let d = z(p1) - 0.5 * (z(p3) + z(p4)) + epsilon;
            gradient[other] += 1.0 / d;
            gradient[labelled] -= 1.0 / d;
            gradient[p1] -= m / (d * d);
            gradient[p3] += 0.5 * m / (d * d);
            gradient[p4] += 0.5 * m / (d * d);
            m / d
        }
    }
}

/// Per-sample DLR losses from differentiable candle ops: the picks are made on the host, the
/// logits gathered at them. `labels` are checked u32 class indices.
pub(crate) fn per_sample(
    loss: Loss,
    logits: &Tensor,
    labels: &Tensor,
) -> Result<Tensor, ModelError> {
    let (batch, _) = logits.dims2()?;
    let host: Vec<Vec<f64>> = logits.detach().to_dtype(DType::F64)?.to_vec2()?;
    let label_values: Vec<u32> = labels.to_vec1()?;
    let mut picks = Vec::with_capacity(batch * 5);
    for (row, &label) in host.iter().zip(&label_values) {
        picks.extend(dlr_picks(row, label as usize).map(|k| k as u32));
    }
    let index = Tensor::from_vec(picks, (batch, 5), logits.device())?;
    let picked = logits.gather(&index, 1)?;
    let column =
        |k: usize| -> Result<Tensor, ModelError> { Ok(picked.narrow(1, k, 1)?.squeeze(1)?) };
    let (labelled, other, p1, p3, p4) =
        (column(0)?, column(1)?, column(2)?, column(3)?, column(4)?);
    match loss {
        Loss::Dlr => {
            let margin = (labelled - other)?;
            let spread = (p1 - p3)?.affine(1.0, DLR_EPSILON)?;
            Ok(margin.div(&spread)?.neg()?)
        }
        _ => {
            let margin = (other - labelled)?;
            let spread = (p1 - (p3 + p4)?.affine(0.5, 0.0)?)?.affine(1.0, DLR_EPSILON)?;
            Ok(margin.div(&spread)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn candle_loss(loss: Loss, logits: &[f32], label: u32) -> f32 {
        let z = Tensor::from_vec(logits.to_vec(), (1, logits.len()), &Device::Cpu).unwrap();
        let y = Tensor::new(&[label], &Device::Cpu).unwrap();
        loss.per_sample(&z, &y).unwrap().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn dlr_matches_a_hand_computed_value() {
        // Sorted: 5 (class 1), 3 (class 3), 2 (class 0), 1 (class 2), −1 (class 4).
        let z = [2.0f32, 5.0, 1.0, 3.0, -1.0];
        // Untargeted, y = 0: −(2 − 5) / (5 − 2) = 1.
        assert!((candle_loss(Loss::Dlr, &z, 0) - 1.0).abs() < 1e-6);
        // Untargeted, y = 1 (correct): −(5 − 3) / (5 − 2) = −2/3.
        assert!((candle_loss(Loss::Dlr, &z, 1) + 2.0 / 3.0).abs() < 1e-6);
        // Targeted, t = 2: (5 − 1) / (5 − ½(2 + 1)) = 4 / 3.5.
        assert!((candle_loss(Loss::DlrTargeted, &z, 2) - 4.0 / 3.5).abs() < 1e-6);
        // Targeted, t = 1 (already the prediction): (3 − 5) / 3.5.
        assert!((candle_loss(Loss::DlrTargeted, &z, 1) + 2.0 / 3.5).abs() < 1e-6);
        let mut gradient = [0f32; 5];
        let native = loss_and_logit_gradient(Loss::Dlr, &z, 0, &mut gradient);
        assert!((native - 1.0).abs() < 1e-6);
        // ∂/∂z_0 = −1/d + m/d² · (−1)[π3 = 0] with m = −3, d = 3: −1/3 + 1/3 = 0;
        // ∂/∂z_1 = 1/d + m/d² = 1/3 − 1/3 = 0. The loss is exactly 1 while class 1 leads
        // class 0 with class 0 third: a flat region.
        for g in gradient {
            assert!(g.abs() < 1e-6, "{gradient:?}");
        }
        // y = 3 (second): m = 3 − 5 = −2, d = 5 − 2 = 3, L = 2/3; ∂/∂z_3 = −1/3,
        // ∂/∂z_1 = 1/3 + m/d² = 1/9, ∂/∂z_0 (π3) = −m/d² = 2/9.
        let native = loss_and_logit_gradient(Loss::Dlr, &z, 3, &mut gradient);
        assert!((native - 2.0 / 3.0).abs() < 1e-6);
        let expected = [2.0 / 9.0, 1.0 / 9.0, 0.0, -1.0 / 3.0, 0.0];
        for (g, e) in gradient.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{gradient:?}");
        }
    }

    #[test]
    fn dlr_is_invariant_to_shift_and_positive_scale() {
        let z = [0.3f32, -1.2, 2.5, 0.9, 1.7, -0.4];
        for loss in [Loss::Dlr, Loss::DlrTargeted] {
            for label in 0..6 {
                let base = candle_loss(loss, &z, label);
                for (scale, shift) in [(1.0f32, 7.0f32), (3.5, 0.0), (0.25, -11.0)] {
                    let moved: Vec<f32> = z.iter().map(|v| v * scale + shift).collect();
                    let value = candle_loss(loss, &moved, label);
                    assert!(
                        (value - base).abs() < 1e-4,
                        "{loss:?} label {label}: {base} vs {value} after ×{scale} + {shift}"
                    );
                }
            }
        }
    }

    #[test]
    fn native_and_candle_gradients_agree_and_match_finite_differences() {
        let z = [0.3f32, -1.2, 2.5, 0.9, 1.7, -0.4, 2.5];
        for loss in [Loss::Dlr, Loss::DlrTargeted] {
            for label in 0..z.len() {
                let mut gradient = vec![0f32; z.len()];
                let native = loss_and_logit_gradient(loss, &z, label, &mut gradient);
                let candle = candle_loss(loss, &z, label as u32);
                assert!((native - candle).abs() < 1e-6, "{loss:?} {label}");
                // Autograd through the candle form.
                let var =
                    candle_core::Var::from_vec(z.to_vec(), (1, z.len()), &Device::Cpu).unwrap();
                let y = Tensor::new(&[label as u32], &Device::Cpu).unwrap();
                let value = loss.per_sample(var.as_tensor(), &y).unwrap();
                let grads = value.sum_all().unwrap().backward().unwrap();
                let autograd: Vec<f32> = grads
                    .get(var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                for (a, b) in autograd.iter().zip(&gradient) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{loss:?} {label}: {autograd:?} vs {gradient:?}"
                    );
                }
                // Central differences away from the tie (classes 2 and 6 tie at 2.5; a
                // difference step that crosses it changes the picks, so skip those two).
                for k in [0usize, 1, 3, 4, 5] {
                    let h = 1e-3f32;
                    let mut plus = z;
                    plus[k] += h;
                    let mut minus = z;
                    minus[k] -= h;
                    let mut scratch = vec![0f32; z.len()];
                    let numeric = (loss_and_logit_gradient(loss, &plus, label, &mut scratch)
                        - loss_and_logit_gradient(loss, &minus, label, &mut scratch))
                        / (2.0 * h);
                    assert!(
                        (numeric - gradient[k]).abs() < 2e-3,
                        "{loss:?} label {label} logit {k}: {numeric} vs {}",
                        gradient[k]
                    );
                }
            }
        }
    }

    #[test]
    fn small_models_and_nan_are_defined() {
        // Two classes: π3 is the last class, so d = |z_0 − z_1| and the loss is ±1.
        assert!((candle_loss(Loss::Dlr, &[1.0, 3.0], 0) - 1.0).abs() < 1e-6);
        assert!((candle_loss(Loss::Dlr, &[1.0, 3.0], 1) + 1.0).abs() < 1e-6);
        // One class: no other class, a zero margin.
        assert_eq!(candle_loss(Loss::Dlr, &[4.0], 0), 0.0);
        let mut gradient = [0f32; 3];
        assert!(
            loss_and_logit_gradient(Loss::Dlr, &[1.0, f32::NAN, 0.0], 0, &mut gradient).is_nan()
        );
        assert!(candle_loss(Loss::DlrTargeted, &[1.0, f32::NAN, 0.0], 0).is_nan());
    }
}
