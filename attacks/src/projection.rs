//! Projections onto the feasible set of a threat model: the ε-ball around the clean input
//! intersected with the [0, 1] pixel box.
//!
//! All tensors are batch-first and every norm is per sample: a tensor of shape `(batch, …)`
//! holds `batch` independent perturbations.
//!
//! [`project`] is what attacks call after every step. Its promise is exact *in f32*: for every
//! output `x′`, `perturbation_norms(x′, x, norm)[i] ≤ ε` holds without any tolerance and every
//! value is in [0, 1]. Plain arithmetic does not give that: `x + ε` is rounded, so clipping to
//! `x + ε` can leave `(x′ − x)` half an ulp above ε — the float-comparison bug that made ART
//! report perturbations larger than ε (ART #507). The few elements (L∞) or samples (L2) that
//! rounding pushes out are moved back toward `x` by a few ulps.
//!
//! For L∞ the box and the ball are both coordinate-wise, so clamping to their intersection is
//! the exact Euclidean projection. For L2 [`project`] projects onto the ball and then clips to
//! the box, as Madry et al., torchattacks and ART do; clipping only moves coordinates toward
//! the clean input (which is in the box), so the norm can only shrink and the result stays in
//! the ball. It is not the exact projection onto the intersection, which would need a
//! per-sample search, and attacks do not need it.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use crate::params::check_epsilon;
use crate::{AttackError, Norm, ThreatModel};

/// Per-sample norms of a batch-first tensor `(batch, …)`, shape `(batch,)`.
///
/// L∞ is the largest absolute value, L2 the square root of the sum of squares, both over all
/// non-batch dimensions. [`project`] measures with this same function, so its bound holds
/// exactly for the numbers this function returns.
pub fn per_sample_norms(values: &Tensor, norm: Norm) -> Result<Tensor, AttackError> {
    let flat = values.flatten_from(1)?;
    Ok(match norm {
        Norm::Linf => flat.abs()?.max(1)?,
        Norm::L2 => flat.sqr()?.sum(1)?.sqrt()?,
    })
}

/// The norm of each sample's perturbation `x_adv − x_clean`, one value per sample.
///
/// The harness uses it for the reported perturbation sizes; the conformance tests use it to
/// check the ε bound.
pub fn perturbation_norms(
    x_adv: &Tensor,
    x_clean: &Tensor,
    norm: Norm,
) -> Result<Vec<f32>, AttackError> {
    check_same_shape("adversarial vs clean inputs", x_clean, x_adv)?;
    let norms = per_sample_norms(&(x_adv - x_clean)?, norm)?;
    Ok(norms.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// Project each sample's perturbation onto the L∞ ball of radius `epsilon`: clamp every
/// element to [−ε, ε].
pub fn project_linf_ball(delta: &Tensor, epsilon: f32) -> Result<Tensor, AttackError> {
    check_epsilon(epsilon)?;
    Ok(delta.clamp(-epsilon, epsilon)?)
}

/// Project each sample's perturbation onto the L2 ball of radius `epsilon`: a sample whose
/// norm exceeds ε is rescaled to norm ε (the nearest point of the ball), the others are
/// returned unchanged. The rescaled norm is ε up to f32 rounding; [`project`] is the variant
/// with an exact bound.
pub fn project_l2_ball(delta: &Tensor, epsilon: f32) -> Result<Tensor, AttackError> {
    check_epsilon(epsilon)?;
    let norms = per_sample_norms(delta, Norm::L2)?;
    let inside =
        per_sample_column(&norms.le(epsilon)?, delta.rank())?.broadcast_as(delta.shape())?;
    let scale = epsilon_over(&norms, epsilon)?;
    let rescaled = delta.broadcast_mul(&per_sample_column(&scale, delta.rank())?)?;
    Ok(inside.where_cond(delta, &rescaled)?)
}

/// Clip every value to the [0, 1] pixel box.
pub fn clip_to_unit_box(x: &Tensor) -> Result<Tensor, AttackError> {
    Ok(x.clamp(0f32, 1f32)?)
}

/// Project `x_adv` onto the feasible set around `x_clean`: inside the ε-ball of
/// `threat.norm` *and* inside [0, 1], exactly in f32 (see the module docs).
///
/// `x_clean` must lie in [0, 1]; both must be f32 and of the same shape `(batch, …)`. Points
/// already feasible are returned bit-identical, so the projection is idempotent. A NaN in
/// `x_adv` is replaced by the clean value (per element for L∞, per sample for L2), so NaN
/// never escapes an attack. An attack projecting many times around the same inputs should
/// build one [`FeasibleSet`] instead: it computes the L∞ bounds once.
pub fn project(
    x_adv: &Tensor,
    x_clean: &Tensor,
    threat: ThreatModel,
) -> Result<Tensor, AttackError> {
    FeasibleSet::new(x_clean, threat)?.project(x_adv)
}

/// The feasible set of a threat model around a batch of clean inputs, ready to project onto.
///
/// For L∞ it holds per-element bounds `[lower, upper] ⊆ [max(x − ε, 0), min(x + ε, 1)]`,
/// repaired once so that every f32 value `v` between them has `|v − x| ≤ ε` when computed
/// in f32; a projection is then a clamp (plus a NaN guard), four elementwise operations.
#[derive(Debug, Clone)]
pub struct FeasibleSet {
    clean: Tensor,
    threat: ThreatModel,
    /// `(lower, upper)` for L∞.
    linf_bounds: Option<(Tensor, Tensor)>,
    /// L∞ on CPU: `[lower, upper, clean]` stacked, `(3, elements)`, for [`FeasibleSet::sign_step`].
    packed: Option<Tensor>,
}

impl FeasibleSet {
    /// The set around `x_clean` (f32, `(batch, …)`, values in [0, 1]).
    pub fn new(x_clean: &Tensor, threat: ThreatModel) -> Result<Self, AttackError> {
        check_epsilon(threat.epsilon)?;
        if x_clean.dtype() != DType::F32 {
            return Err(AttackError::InputDtype {
                dtype: x_clean.dtype(),
            });
        }
        let (linf_bounds, packed) = match threat.norm {
            Norm::Linf if x_clean.device().is_cpu() => {
                // One pass on the host instead of a dozen tensor operations; the same f32
                // arithmetic, so the same bounds bit for bit (tested).
                let clean = x_clean.flatten_all()?.to_vec1::<f32>()?;
                let n = clean.len();
                let mut packed = linf_bounds_on_host(&clean, threat.epsilon);
                packed.extend_from_slice(&clean);
                let packed = Tensor::from_vec(packed, (3, n), x_clean.device())?;
                // Views of the packed rows, not copies.
                let row = |i: usize| packed.narrow(0, i, 1)?.reshape(x_clean.shape());
                (Some((row(0)?, row(1)?)), Some(packed))
            }
            Norm::Linf => (Some(linf_bounds(x_clean, threat.epsilon)?), None),
            Norm::L2 => (None, None),
        };
        Ok(FeasibleSet {
            clean: x_clean.clone(),
            threat,
            linf_bounds,
            packed,
        })
    }

    /// The L∞ set around `x_clean` further limited to the box `[lower, upper]` (flattened like
    /// `x_clean`): per element `[max(x − ε, 0, lower), min(x + ε, 1, upper)]`. A sample for
    /// which that is empty in some element keeps its plain ε-ball ∩ [0, 1]: no input within ε
    /// of it lies in the box. What an adaptive attack projects into when a detector accepts a
    /// box of inputs.
    pub fn within_box(
        x_clean: &Tensor,
        threat: ThreatModel,
        lower: &[f32],
        upper: &[f32],
    ) -> Result<Self, AttackError> {
        check_epsilon(threat.epsilon)?;
        if threat.norm != Norm::Linf {
            return Err(AttackError::invalid_parameter(
                "norm",
                "a box of accepted inputs limits an L∞ ball only",
            ));
        }
        if x_clean.dtype() != DType::F32 {
            return Err(AttackError::InputDtype {
                dtype: x_clean.dtype(),
            });
        }
        let clean = x_clean.flatten_all()?.to_vec1::<f32>()?;
        let n = clean.len();
        if lower.len() != n || upper.len() != n {
            return Err(AttackError::ShapeMismatch {
                what: "box bounds vs the clean inputs",
                expected: vec![n],
                actual: vec![lower.len().min(upper.len())],
            });
        }
        let batch = x_clean.dim(0)?.max(1);
        let d = n / batch;
        let mut packed = linf_bounds_on_host(&clean, threat.epsilon);
        for row in 0..batch {
            let span = row * d..(row + 1) * d;
            let tightened: Vec<(f32, f32)> = span
                .clone()
                .map(|i| (packed[i].max(lower[i]), packed[n + i].min(upper[i])))
                .collect();
            if tightened.iter().all(|(lo, hi)| lo <= hi) {
                for (i, (lo, hi)) in span.zip(tightened) {
                    packed[i] = lo;
                    packed[n + i] = hi;
                }
            }
        }
        packed.extend_from_slice(&clean);
        let packed = Tensor::from_vec(packed, (3, n), x_clean.device())?;
        let row = |i: usize| packed.narrow(0, i, 1)?.reshape(x_clean.shape());
        let linf_bounds = Some((row(0)?, row(1)?));
        Ok(FeasibleSet {
            clean: x_clean.clone(),
            threat,
            linf_bounds,
            packed: x_clean.device().is_cpu().then_some(packed),
        })
    }

    /// The threat model this set belongs to.
    pub fn threat(&self) -> ThreatModel {
        self.threat
    }

    /// The clean inputs at the centre of the set.
    pub fn clean(&self) -> &Tensor {
        &self.clean
    }

    /// One L∞ steepest-ascent step, projected: `project(current + step · sign(gradient))`
    /// with candle's `sign` (0 for 0 and NaN), bit for bit. On CPU it is one pass over the
    /// batch with one output buffer, instead of six elementwise tensor operations; elsewhere,
    /// and for L2, it is exactly those operations.
    pub fn sign_step(
        &self,
        current: &Tensor,
        gradient: &Tensor,
        step: f32,
    ) -> Result<Tensor, AttackError> {
        check_same_shape("adversarial vs clean inputs", &self.clean, current)?;
        check_same_shape("gradient vs clean inputs", &self.clean, gradient)?;
        let fused = self.packed.as_ref().filter(|_| {
            current.device().is_cpu()
                && current.dtype() == DType::F32
                && gradient.dtype() == DType::F32
        });
        let Some(packed) = fused else {
            let moved = (current + gradient.sign()?.affine(f64::from(step), 0.0)?)?;
            return self.project(&moved);
        };
        Ok(current.contiguous()?.apply_op3_no_bwd(
            &gradient.contiguous()?,
            packed,
            &SignStep { step },
        )?)
    }

    /// Project `x_adv` (same shape and dtype as the clean inputs) onto the set; see [`project`].
    pub fn project(&self, x_adv: &Tensor) -> Result<Tensor, AttackError> {
        check_same_shape("adversarial vs clean inputs", &self.clean, x_adv)?;
        if x_adv.dtype() != DType::F32 {
            return Err(AttackError::InputDtype {
                dtype: x_adv.dtype(),
            });
        }
        if let Some(packed) = &self.packed {
            if x_adv.device().is_cpu() {
                return Ok(x_adv
                    .contiguous()?
                    .apply_op2_no_bwd(packed, &ClampToBounds)?);
            }
        }
        match &self.linf_bounds {
            Some((lower, upper)) => {
                let clamped = x_adv.maximum(lower)?.minimum(upper)?;
                // NaN compares unequal to itself; backends disagree on max/min with NaN.
                Ok(x_adv.eq(x_adv)?.where_cond(&clamped, &self.clean)?)
            }
            None => project_l2(x_adv, &self.clean, self.threat.epsilon),
        }
    }
}

/// The fused L∞ step of [`FeasibleSet::sign_step`]: inputs `current`, `gradient` and the
/// packed `[lower, upper, clean]`, all contiguous f32.
struct SignStep {
    step: f32,
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let values = storage.as_slice::<f32>()?;
    layout
        .contiguous_offsets()
        .and_then(|(start, end)| values.get(start..end))
        .ok_or_else(|| candle_core::Error::Msg("sign step: input is not contiguous".into()))
}

/// The packed `[lower, upper, clean]` rows for `n` inputs.
fn split_packed<'a>(
    packed: &'a [f32],
    n: usize,
    what: &str,
) -> candle_core::Result<(&'a [f32], &'a [f32], &'a [f32])> {
    if packed.len() != 3 * n {
        return Err(candle_core::Error::Msg(format!(
            "{what}: {n} inputs, {} packed bounds",
            packed.len()
        )));
    }
    let (lower, rest) = packed.split_at(n);
    let (upper, clean) = rest.split_at(n);
    Ok((lower, upper, clean))
}

impl CustomOp3 for SignStep {
    fn name(&self) -> &'static str {
        "linf-sign-step"
    }

    fn cpu_fwd(
        &self,
        current: &CpuStorage,
        current_layout: &Layout,
        gradient: &CpuStorage,
        gradient_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let current = contiguous_f32(current, current_layout)?;
        let gradient = contiguous_f32(gradient, gradient_layout)?;
        let packed = contiguous_f32(packed, packed_layout)?;
        let n = current.len();
        if gradient.len() != n {
            return Err(candle_core::Error::Msg(format!(
                "sign step: {n} inputs, {} gradients",
                gradient.len()
            )));
        }
        let (lower, upper, clean) = split_packed(packed, n, "sign step")?;
        let step = self.step;
        let out: Vec<f32> = current
            .iter()
            .zip(gradient)
            .zip(lower.iter().zip(upper).zip(clean))
            .map(|((&x, &g), ((&lo, &hi), &x0))| {
                // The same operations as the unfused path: sign, affine, add, then the clamp.
                let sign = f32::from(g > 0.0) - f32::from(g < 0.0);
                clamp_or_clean(x + (sign * step + 0.0), lo, hi, x0)
            })
            .collect();
        Ok((CpuStorage::F32(out), current_layout.shape().clone()))
    }
}

/// [`FeasibleSet::project`] for L∞ on CPU: inputs `x_adv` and the packed
/// `[lower, upper, clean]`.
struct ClampToBounds;

impl CustomOp2 for ClampToBounds {
    fn name(&self) -> &'static str {
        "linf-clamp"
    }

    fn cpu_fwd(
        &self,
        x_adv: &CpuStorage,
        x_adv_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x_adv_values = contiguous_f32(x_adv, x_adv_layout)?;
        let packed = contiguous_f32(packed, packed_layout)?;
        let (lower, upper, clean) = split_packed(packed, x_adv_values.len(), "clamp")?;
        let out: Vec<f32> = x_adv_values
            .iter()
            .zip(lower.iter().zip(upper).zip(clean))
            .map(|(&x, ((&lo, &hi), &x0))| clamp_or_clean(x, lo, hi, x0))
            .collect();
        Ok((CpuStorage::F32(out), x_adv_layout.shape().clone()))
    }
}

/// `x` clamped to `[lo, hi]` with candle's `maximum` and `minimum` (tie and signed-zero rules
/// included), or the clean value `x0` for a NaN; as selects, so the loop does not branch.
#[inline]
fn clamp_or_clean(x: f32, lo: f32, hi: f32, x0: f32) -> f32 {
    let raised = if x < lo { lo } else { x };
    let clamped = if raised > hi { hi } else { raised };
    if x.is_nan() {
        x0
    } else {
        clamped
    }
}

/// [`linf_bounds`] computed on the host with the same f32 operations, in one pass: the lower
/// bounds of all values followed by the upper bounds, in one buffer.
fn linf_bounds_on_host(clean: &[f32], epsilon: f32) -> Vec<f32> {
    let repair = |bound: f32, x: f32| -> f32 {
        let difference = bound - x;
        let over = difference.abs() > epsilon;
        let sign = f32::from(difference > 0.0) - f32::from(difference < 0.0);
        let step = (sign * bound.abs()) * f32::EPSILON + 0.0;
        let nudged = if over { bound - step } else { bound };
        if (nudged - x).abs() <= epsilon {
            nudged
        } else {
            x
        }
    };
    let mut bounds = Vec::with_capacity(3 * clean.len());
    bounds.extend(clean.iter().map(|&x| {
        let bound = x * 1.0 + (-epsilon);
        repair(if bound < 0.0 { 0.0 } else { bound }, x)
    }));
    bounds.extend(clean.iter().map(|&x| {
        let bound = x * 1.0 + epsilon;
        repair(if bound > 1.0 { 1.0 } else { bound }, x)
    }));
    bounds
}

/// `[max(x − ε, 0), min(x + ε, 1)]`, with each bound repaired for rounding.
fn linf_bounds(x: &Tensor, epsilon: f32) -> Result<(Tensor, Tensor), AttackError> {
    let lower = x.affine(1.0, -f64::from(epsilon))?.maximum(0f32)?;
    let upper = x.affine(1.0, f64::from(epsilon))?.minimum(1f32)?;
    Ok((
        repair_bound(&lower, x, epsilon)?,
        repair_bound(&upper, x, epsilon)?,
    ))
}

/// Move a bound toward `x` until `|bound − x| ≤ ε` holds in f32.
///
/// `x ± ε` is rounded to nearest, so `bound − x` can come out one rounding above ε. Where it
/// does, step toward x by |bound|·2⁻²³, which is one or two ulps of the bound: the overshoot
/// is at most half an ulp, so this lands inside, and never past x unless ε itself is below two
/// ulps. (Bounds set by the box are never over: they lie between x and x ± ε.) Whatever is
/// still outside falls back to x. Every value between x and the repaired bound is then inside
/// too, because rounding is monotone.
fn repair_bound(bound: &Tensor, x: &Tensor, epsilon: f32) -> Result<Tensor, AttackError> {
    let difference = (bound - x)?;
    let over = difference.abs()?.gt(epsilon)?;
    let step = (difference.sign()? * bound.abs()?)?.affine(f64::from(f32::EPSILON), 0.0)?;
    let nudged = over.where_cond(&(bound - step)?, bound)?;
    let inside = (&nudged - x)?.abs()?.le(epsilon)?;
    Ok(inside.where_cond(&nudged, x)?)
}

/// Radial projection onto the ball, clip to the box, then repair rounding.
fn project_l2(x_adv: &Tensor, x: &Tensor, epsilon: f32) -> Result<Tensor, AttackError> {
    let rank = x.rank();
    let delta = (x_adv - x)?;
    let norms = per_sample_norms(&delta, Norm::L2)?;
    let inside = per_sample_column(&norms.le(epsilon)?, rank)?.broadcast_as(x.shape())?;
    let scale = per_sample_column(&epsilon_over(&norms, epsilon)?, rank)?;
    let rescaled = (x + delta.broadcast_mul(&scale)?)?;
    // Feasible samples keep `x_adv` itself, not `x + (x_adv − x)`, which can differ by a
    // rounding: that is what makes the projection idempotent.
    let mut projected = clip_to_unit_box(&inside.where_cond(x_adv, &rescaled)?)?;

    // The measured norm of `projected − x` can exceed ε by a few roundings: each coordinate
    // of x + δ is rounded by up to half an ulp (≤ 2⁻²⁵ in [0, 1]), so ‖·‖₂ moves by up to
    // √d·2⁻²⁵, and the scale and the sum of squares add relative errors. Shrink the offending
    // samples to a radius below ε by a margin covering both, doubling it each round; a sample
    // whose ε is smaller than the margin goes back to its clean value.
    let features = x.elem_count() / x.dim(0)?.max(1);
    let ulp_margin = (features as f64).sqrt() * f64::from(f32::EPSILON) / 2.0;
    for round in 0..4 {
        let delta = (&projected - x)?;
        let norms = per_sample_norms(&delta, Norm::L2)?;
        let inside = norms.le(epsilon)?;
        if all_set(&inside)? {
            return Ok(projected);
        }
        let growth = f64::from(1u32 << (3 * round));
        let radius = f64::from(epsilon) * (1.0 - 1e-6 * growth) - ulp_margin * growth;
        let shrunk = if radius > 0.0 {
            let scale = epsilon_over(&norms, 1.0)?.affine(radius, 0.0)?;
            clip_to_unit_box(&(x + delta.broadcast_mul(&per_sample_column(&scale, rank)?)?)?)?
        } else {
            x.clone()
        };
        let inside = per_sample_column(&inside, rank)?.broadcast_as(x.shape())?;
        projected = inside.where_cond(&projected, &shrunk)?;
    }
    // Only NaN can get here: fall back to the clean sample.
    let norms = per_sample_norms(&(&projected - x)?, Norm::L2)?;
    let inside = per_sample_column(&norms.le(epsilon)?, rank)?.broadcast_as(x.shape())?;
    Ok(inside.where_cond(&projected, x)?)
}

/// ε / norm per sample (∞ or NaN where the norm is 0; callers select those away).
fn epsilon_over(norms: &Tensor, epsilon: f32) -> Result<Tensor, AttackError> {
    let epsilon = Tensor::new(epsilon, norms.device())?.to_dtype(norms.dtype())?;
    Ok(epsilon.broadcast_div(norms)?)
}

/// Reshape a per-sample vector `(batch,)` to `(batch, 1, …, 1)` with `rank` dimensions, ready
/// to broadcast against a batch of that rank.
pub(crate) fn per_sample_column(values: &Tensor, rank: usize) -> Result<Tensor, AttackError> {
    let mut shape = vec![1usize; rank.max(1)];
    shape[0] = values.elem_count();
    Ok(values.reshape(shape)?)
}

/// Whether every entry of a u8 mask is non-zero (one device-to-host sync).
fn all_set(mask: &Tensor) -> Result<bool, AttackError> {
    if mask.elem_count() == 0 {
        return Ok(true);
    }
    Ok(mask.flatten_all()?.min(0)?.to_scalar::<u8>()? != 0)
}

fn check_same_shape(
    what: &'static str,
    expected: &Tensor,
    actual: &Tensor,
) -> Result<(), AttackError> {
    if expected.dims() == actual.dims() {
        Ok(())
    } else {
        Err(AttackError::ShapeMismatch {
            what,
            expected: expected.dims().to_vec(),
            actual: actual.dims().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn tensor(values: &[f32], batch: usize) -> Tensor {
        Tensor::from_slice(values, (batch, values.len() / batch), &Device::Cpu).unwrap()
    }

    // Sample 0's ball [0.4, 0.6] × [0.1, 0.3] meets the box [0.5, 1] × [0, 0.2] in
    // [0.5, 0.6] × [0.1, 0.2]; sample 1's ball [0.8, 1] × [0.8, 1] misses the box's second
    // interval [0, 0.2], so it keeps its whole ball.
    #[test]
    fn a_box_tightens_each_ball_it_meets_and_leaves_the_others() {
        let clean = tensor(&[0.5, 0.2, 0.9, 0.9], 2);
        let threat = ThreatModel {
            norm: Norm::Linf,
            epsilon: 0.1,
        };
        let set =
            FeasibleSet::within_box(&clean, threat, &[0.5, 0.0, 0.5, 0.0], &[1.0, 0.2, 1.0, 0.2])
                .unwrap();
        let far = tensor(&[0.0, 1.0, 0.0, 0.0], 2);
        let projected: Vec<f32> = set
            .project(&far)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let expected = [0.5f32, 0.2, 0.8, 0.8];
        for (p, e) in projected.iter().zip(expected) {
            assert!((p - e).abs() < 1e-6, "{projected:?}");
        }
        let near = tensor(&[1.0, -1.0, 2.0, 2.0], 2);
        let projected: Vec<f32> = set
            .project(&near)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let expected = [0.6f32, 0.1, 1.0, 1.0];
        for (p, e) in projected.iter().zip(expected) {
            assert!((p - e).abs() < 1e-6, "{projected:?}");
        }
        let l2 = ThreatModel {
            norm: Norm::L2,
            epsilon: 0.1,
        };
        assert!(FeasibleSet::within_box(&clean, l2, &[0.0; 4], &[1.0; 4]).is_err());
        assert!(FeasibleSet::within_box(&clean, threat, &[0.0; 3], &[1.0; 4]).is_err());
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        values(t).iter().map(|v| v.to_bits()).collect()
    }

    fn norm_of(norm: Norm) -> impl Fn(&[f32]) -> f64 {
        move |v: &[f32]| match norm {
            Norm::Linf => v.iter().fold(0.0f64, |m, x| m.max(f64::from(x.abs()))),
            Norm::L2 => v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt(),
        }
    }

    fn clean_value() -> impl Strategy<Value = f32> {
        prop_oneof![4 => 0.0f32..=1.0, 1 => Just(0.0f32), 1 => Just(1.0f32)]
    }

    fn epsilon() -> impl Strategy<Value = f32> {
        prop_oneof![
            4 => 0.0f32..1.5,
            1 => Just(0.0f32),
            1 => 1e-8f32..1e-5,
            1 => Just(8.0f32 / 255.0),
            1 => Just(0.3f32),
        ]
    }

    /// (batch, clean, adversarial, ε). Half the cases put the adversarial point at x + s·ε for
    /// s around ±1, where rounding of x ± ε matters most.
    fn case() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, f32)> {
        (1usize..4, 1usize..10, epsilon(), any::<bool>()).prop_flat_map(
            |(batch, dim, eps, near_boundary)| {
                let n = batch * dim;
                (vec(clean_value(), n), vec(-1.5f32..1.5, n)).prop_map(move |(clean, offsets)| {
                    let adversarial = clean
                        .iter()
                        .zip(&offsets)
                        .map(|(x, s)| {
                            if near_boundary {
                                x + s.signum() * eps * (1.0 + (s.abs() - 0.75) * 1e-6)
                            } else {
                                x + s
                            }
                        })
                        .collect();
                    (batch, clean, adversarial, eps)
                })
            },
        )
    }

    fn check_feasible(
        projected: &Tensor,
        clean: &Tensor,
        threat: ThreatModel,
    ) -> Result<(), TestCaseError> {
        let out = values(projected);
        prop_assert!(
            out.iter().all(|v| (0.0..=1.0).contains(v)),
            "outside the box: {out:?}"
        );
        let norms = perturbation_norms(projected, clean, threat.norm).unwrap();
        // Exact: no tolerance.
        prop_assert!(
            norms.iter().all(|n| *n <= threat.epsilon),
            "norms {norms:?} above ε = {}",
            threat.epsilon
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn projection_is_feasible_exactly_and_idempotent((batch, clean, adversarial, epsilon) in case()) {
            let x = tensor(&clean, batch);
            let x_adv = tensor(&adversarial, batch);
            for norm in [Norm::Linf, Norm::L2] {
                let threat = ThreatModel { norm, epsilon };
                let projected = project(&x_adv, &x, threat).unwrap();
                prop_assert_eq!(projected.dims(), x.dims());
                check_feasible(&projected, &x, threat)?;
                let again = project(&projected, &x, threat).unwrap();
                prop_assert_eq!(bits(&again), bits(&projected), "not idempotent for {}", norm);
                if epsilon == 0.0 {
                    prop_assert_eq!(bits(&projected), bits(&x));
                }
            }
        }

        // L∞: the box and the ball are both coordinate-wise, so the projection onto their
        // intersection is the clamp to [max(x − ε, 0), min(x + ε, 1)]; the output may differ
        // from it (computed in f64) only by the rounding repair, a few ulps.
        #[test]
        fn linf_projection_is_the_clamp((batch, clean, adversarial, epsilon) in case()) {
            // Below ~2 ulps the repair may fall back to x instead; the feasibility test covers it.
            let epsilon = epsilon.max(1e-6);
            let x = tensor(&clean, batch);
            let projected = values(&project(&tensor(&adversarial, batch), &x, ThreatModel { norm: Norm::Linf, epsilon }).unwrap());
            for ((x, a), p) in clean.iter().zip(&adversarial).zip(&projected) {
                let (x, a, e) = (f64::from(*x), f64::from(*a), f64::from(epsilon));
                let expected = a.clamp((x - e).max(0.0), (x + e).min(1.0));
                prop_assert!((f64::from(*p) - expected).abs() <= 5e-7, "{p} vs {expected}");
            }
        }

        // L2: a sample already inside the ball and the box comes back bit for bit; one outside
        // the ball is rescaled radially to ε and then clipped to the box.
        #[test]
        fn l2_projection_rescales_then_clips((batch, clean, adversarial, epsilon) in case()) {
            let x = tensor(&clean, batch);
            let projected = values(&project(&tensor(&adversarial, batch), &x, ThreatModel { norm: Norm::L2, epsilon }).unwrap());
            let dim = clean.len() / batch;
            for i in 0..batch {
                let range = i * dim..(i + 1) * dim;
                let (x, a, p) = (&clean[range.clone()], &adversarial[range.clone()], &projected[range]);
                let delta: Vec<f64> = a.iter().zip(x).map(|(a, x)| f64::from(*a) - f64::from(*x)).collect();
                let length = delta.iter().map(|d| d * d).sum::<f64>().sqrt();
                let inside_box = a.iter().all(|v| (0.0..=1.0).contains(v));
                let inside_ball = norm_of(Norm::L2)(&a.iter().zip(x).map(|(a, x)| a - x).collect::<Vec<_>>()) <= f64::from(epsilon);
                if inside_box && inside_ball {
                    prop_assert_eq!(p, a);
                }
                let scale = if length > f64::from(epsilon) { f64::from(epsilon) / length } else { 1.0 };
                for ((x, d), p) in x.iter().zip(&delta).zip(p) {
                    let expected = (f64::from(*x) + d * scale).clamp(0.0, 1.0);
                    prop_assert!((f64::from(*p) - expected).abs() <= 1e-6 + 1e-3 * f64::from(epsilon), "{p} vs {expected}");
                }
            }
        }

        // The radial rescale is the Euclidean projection onto the L2 ball: no point of the ball
        // is closer to δ.
        #[test]
        fn l2_ball_projection_is_the_nearest_point(
            delta in vec(-3.0f32..3.0, 1..12),
            direction in vec(-1.0f32..1.0, 12),
            fraction in 0.0f32..=1.0,
            epsilon in 0.0f32..2.0,
        ) {
            let dim = delta.len();
            let projected = values(&project_l2_ball(&tensor(&delta, 1), epsilon).unwrap());
            let norm = norm_of(Norm::L2);
            prop_assert!(norm(&projected) <= f64::from(epsilon) * (1.0 + 1e-6) + 1e-12);
            // Another point of the ball: a random direction at radius fraction·ε.
            let direction = &direction[..dim];
            let length = norm(direction);
            prop_assume!(length > 1e-3);
            let other: Vec<f32> = direction.iter().map(|d| (f64::from(*d) / length * f64::from(fraction * epsilon)) as f32).collect();
            let distance = |p: &[f32]| norm(&p.iter().zip(&delta).map(|(p, d)| p - d).collect::<Vec<_>>());
            prop_assert!(distance(&projected) <= distance(&other) + 1e-5);
            let again = values(&project_l2_ball(&tensor(&projected, 1), epsilon).unwrap());
            prop_assert!(again.iter().zip(&projected).all(|(a, b)| (a - b).abs() <= 1e-6));
        }

        #[test]
        fn linf_ball_projection_is_the_clamp(delta in vec(-3.0f32..3.0, 1..12), epsilon in 0.0f32..2.0) {
            let projected = values(&project_linf_ball(&tensor(&delta, 1), epsilon).unwrap());
            for (d, p) in delta.iter().zip(&projected) {
                prop_assert_eq!(*p, d.clamp(-epsilon, epsilon));
            }
        }
    }

    #[test]
    fn nan_never_escapes() {
        let x = tensor(&[0.5, 0.2, 0.9, 0.0], 2);
        let x_adv = tensor(&[f32::NAN, 0.25, 0.9, f32::NAN], 2);
        for norm in [Norm::Linf, Norm::L2] {
            let threat = ThreatModel { norm, epsilon: 0.1 };
            let projected = project(&x_adv, &x, threat).unwrap();
            let out = values(&projected);
            assert!(out.iter().all(|v| v.is_finite()), "{norm}: {out:?}");
            assert!(perturbation_norms(&projected, &x, norm)
                .unwrap()
                .iter()
                .all(|n| *n <= 0.1));
        }
        // L∞ repairs per element, L2 per sample.
        let linf = values(
            &project(
                &x_adv,
                &x,
                ThreatModel {
                    norm: Norm::Linf,
                    epsilon: 0.1,
                },
            )
            .unwrap(),
        );
        assert_eq!(linf, vec![0.5, 0.25, 0.9, 0.0]);
        let l2 = values(
            &project(
                &x_adv,
                &x,
                ThreatModel {
                    norm: Norm::L2,
                    epsilon: 0.1,
                },
            )
            .unwrap(),
        );
        assert_eq!(l2, vec![0.5, 0.2, 0.9, 0.0]);
    }

    // x + ε is rounded: for these values fl(fl(x + ε) − x) > ε, so a plain clamp to x + ε
    // would break the bound; the projection must not.
    #[test]
    fn rounding_of_x_plus_epsilon_is_repaired() {
        let mut found = 0;
        let epsilon = 8.0f32 / 255.0;
        let clean: Vec<f32> = (0..2000).map(|i| 0.05 + i as f32 * 0.000_45).collect();
        for &x in &clean {
            if (x + epsilon) - x > epsilon {
                found += 1;
            }
        }
        assert!(found > 0, "the test needs inputs where x + ε rounds up");
        let x = tensor(&clean, 1);
        let x_adv = x.affine(1.0, 1.0).unwrap();
        let projected = project(
            &x_adv,
            &x,
            ThreatModel {
                norm: Norm::Linf,
                epsilon,
            },
        )
        .unwrap();
        let norms = perturbation_norms(&projected, &x, Norm::Linf).unwrap();
        assert!(norms[0] <= epsilon, "{} > {epsilon}", norms[0]);
        // ... and keeps (almost) the whole budget everywhere.
        for (p, x) in values(&projected).iter().zip(&clean) {
            assert!(p - x >= epsilon * (1.0 - 1e-6), "{p} - {x} lost budget");
        }
    }

    #[test]
    fn mismatched_shapes_and_bad_epsilon_are_errors() {
        let x = tensor(&[0.5, 0.5], 1);
        let y = tensor(&[0.5, 0.5, 0.5], 1);
        let threat = ThreatModel {
            norm: Norm::Linf,
            epsilon: 0.1,
        };
        assert!(matches!(
            project(&y, &x, threat),
            Err(AttackError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            perturbation_norms(&y, &x, Norm::L2),
            Err(AttackError::ShapeMismatch { .. })
        ));
        let negative = ThreatModel {
            norm: Norm::L2,
            epsilon: -1.0,
        };
        assert!(matches!(
            project(&x, &x, negative),
            Err(AttackError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn norms_are_per_sample() {
        let x = Tensor::zeros((2, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let x_adv = Tensor::from_slice(
            &[0.3f32, -0.4, 0.0, 0.0, 0.1, 0.1, 0.1, -0.7],
            (2, 1, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            perturbation_norms(&x_adv, &x, Norm::Linf).unwrap(),
            vec![0.4, 0.7]
        );
        let l2 = perturbation_norms(&x_adv, &x, Norm::L2).unwrap();
        assert!(
            (l2[0] - 0.5).abs() < 1e-6 && (l2[1] - 0.72111).abs() < 1e-5,
            "{l2:?}"
        );
    }

    proptest! {
        #[test]
        fn fused_sign_step_is_the_unfused_operations_bit_for_bit(
            clean in vec(clean_value(), 12),
            offsets in vec(prop_oneof![4 => -0.5f32..0.5, 1 => Just(0.0f32), 1 => Just(-0.0f32)], 12),
            gradient in vec(prop_oneof![
                4 => -1.0f32..1.0, 1 => Just(0.0f32), 1 => Just(f32::NAN), 1 => Just(1e-30f32)
            ], 12),
            epsilon in epsilon(),
            step in prop_oneof![Just(0.01f32), Just(-0.01f32), 0.0f32..0.2],
            nan_at in 0usize..24,
        ) {
            let x = tensor(&clean, 3);
            let threat = ThreatModel { norm: Norm::Linf, epsilon };
            let set = FeasibleSet::new(&x, threat).unwrap();
            prop_assert!(set.packed.is_some());
            let mut current: Vec<f32> = clean.iter().zip(&offsets).map(|(c, o)| c + o).collect();
            if let Some(value) = current.get_mut(nan_at) {
                *value = f32::NAN;
            }
            let (current, gradient) = (tensor(&current, 3), tensor(&gradient, 3));
            let fused = set.sign_step(&current, &gradient, step).unwrap();
            let moved = (&current + gradient.sign().unwrap().affine(f64::from(step), 0.0).unwrap())
                .unwrap();
            let unfused = set.project(&moved).unwrap();
            prop_assert_eq!(bits(&fused), bits(&unfused));
        }
    }

    proptest! {
        #[test]
        fn host_bounds_are_the_tensor_bounds_bit_for_bit(
            clean in vec(clean_value(), 1..40),
            epsilon in epsilon(),
        ) {
            let x = tensor(&clean, 1);
            let (lower, upper) = linf_bounds(&x, epsilon).unwrap();
            let host = linf_bounds_on_host(&clean, epsilon);
            let (host_lower, host_upper) = host.split_at(clean.len());
            let host_bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&lower), host_bits(host_lower));
            prop_assert_eq!(bits(&upper), host_bits(host_upper));
        }
    }
}
