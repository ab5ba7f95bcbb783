//! Square Attack: a score-based black-box attack by random search over square patches.
//!
//! ## What it does
//!
//! Needs only the logits. Each sample keeps its best point so far and, once per query,
//! proposes a change on a random square window of side `s` (L∞: every channel of the window
//! set to ±ε around the clean input, one sign per channel; L2: a pair of windows whose mass is
//! moved, with the paper's centre-heavy pattern), projected onto the ε-ball ∩ [0, 1]. The
//! proposal is kept if it lowers the margin `z_y − max_{j≠y} z_j`. The window's area is a
//! share `p` of the image, `p_init` at first and halved at 10, 50, 200, 500, 1,000, 2,000,
//! 4,000, 6,000 and 8,000 queries, the paper's schedule. L∞ starts from vertical stripes of
//! ±ε, L2 from a tiling of the pattern at norm ε. A sample is no longer queried once
//! misclassified (early stopping); one already misclassified on the clean input is returned
//! unchanged and costs one query. Cost: at most `queries` forward passes per sample, no
//! gradient.
//!
//! ## Threat model
//!
//! Score-based black box: logits only, no gradients, so it is not fooled by masked gradients;
//! breaking samples a white-box attack did not is the sign of gradient masking. Budget ε in
//! L∞ or L2 inside [0, 1]; ε = 0 returns the input bit for bit. Every random draw comes from
//! the sample's own generator (`Stream::Restart(0)`). Untargeted.
//!
//! ## Parameters
//!
//! - `norm` (default `"linf"`): `"linf"` or `"l2"`.
//! - `queries` (default `5000`): forward passes per sample, the first one at the starting point.
//! - `p_init` (default `0.8`): the initial share of the image a window covers, in (0, 1].
//!
//! ## Known-answer tests
//!
//! Every proposal stays in the ε-ball and box and the margin never rises; on the shipped model
//! it lowers robust accuracy well below clean at ε = 0.1 and its query counts stop at the
//! budget; the window schedule is the paper's.
//!
//! ## Reference
//!
//! Andriushchenko, Croce, Flammarion, Hein. *Square Attack: a query-efficient black-box
//! adversarial attack via random search.* ECCV 2020, arXiv:1912.00049.

use candle_core::{Device, Tensor};
use gauntlet_models::Model;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::objective::{check_batch, check_randomness};
use crate::params::{self, check_epsilon, parse_params};
use crate::projection::FeasibleSet;
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, ParameterDoc, Passes, SampleRandomness, Stream, ThreatModel,
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "square",
    summary: "Square Attack: score-based black-box random search over square windows; logits only, per-sample query budget",
    reference: "Andriushchenko, Croce, Flammarion, Hein. Square Attack: a query-efficient black-box adversarial attack via random search. ECCV 2020. arXiv:1912.00049",
    parameters: &[
        params::NORM,
        ParameterDoc {
            name: "queries",
            default: "5000",
            description: "Forward passes per sample (the first at the starting point); a sample stops being queried once misclassified. At least 1.",
        },
        ParameterDoc {
            name: "p_init",
            default: "0.8",
            description: "Initial share of the image one window covers, halved on the paper's schedule; in (0, 1].",
        },
    ],
    kind: AttackKind::Iterative,
    needs: ModelAccess::Logits,
    budget: BudgetSemantics::Bounded,
    conformance_variants: &[
        "norm = \"linf\"\nqueries = 60",
        "norm = \"l2\"\nqueries = 60",
        "queries = 1",
        "norm = \"l2\"\nqueries = 25\np_init = 0.05",
    ],
    build,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    norm: Norm,
    queries: u32,
    p_init: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::Linf,
            queries: 5000,
            p_init: 0.8,
        }
    }
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    Ok(Box::new(Square::from_table(params, epsilon)?))
}

impl Square {
    /// The attack from a suite table, as the registry builds it; for callers that want
    /// [`Square::perturb_with_queries`].
    pub fn from_table(params: &toml::Table, epsilon: f32) -> Result<Square, AttackError> {
        validate(parse_params::<Params>(params)?, epsilon)
    }
}

fn validate(p: Params, epsilon: f32) -> Result<Square, AttackError> {
    check_epsilon(epsilon)?;
    if p.queries < 1 {
        return Err(AttackError::invalid_parameter(
            "queries",
            format!("queries must be ≥ 1, got {}", p.queries),
        ));
    }
    if !(p.p_init > 0.0 && p.p_init <= 1.0) {
        return Err(AttackError::invalid_parameter(
            "p_init",
            format!("p_init must be in (0, 1], got {}", p.p_init),
        ));
    }
    Ok(Square {
        threat: ThreatModel {
            norm: p.norm,
            epsilon,
        },
        queries: p.queries,
        p_init: p.p_init,
    })
}

/// The Square Attack.
#[derive(Debug, Clone)]
pub struct Square {
    threat: ThreatModel,
    queries: u32,
    p_init: f32,
}

/// The window share at iteration `iteration` (0-based, the starting point not counted): the
/// paper's piecewise-constant schedule for 10,000 iterations.
pub fn p_schedule(p_init: f32, iteration: u32) -> f32 {
    let halvings = match iteration {
        0..=10 => 0,
        11..=50 => 1,
        51..=200 => 2,
        201..=500 => 3,
        501..=1000 => 4,
        1001..=2000 => 5,
        2001..=4000 => 6,
        4001..=6000 => 7,
        6001..=8000 => 8,
        _ => 9,
    };
    p_init / (1u32 << halvings) as f32
}

/// Image geometry: channels, height, width of one sample.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
}

impl Geometry {
    fn of(sample_dims: &[usize]) -> Self {
        match sample_dims {
            [c, h, w] => Geometry {
                c: *c,
                h: *h,
                w: *w,
            },
            [h, w] => Geometry { c: 1, h: *h, w: *w },
            other => Geometry {
                c: 1,
                h: 1,
                w: other.iter().product(),
            },
        }
    }

    fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn at(&self, ch: usize, row: usize, col: usize) -> usize {
        (ch * self.h + row) * self.w + col
    }

    /// The side of the window for share `p`, at least `smallest`, at most the image's side.
    fn side(&self, p: f32, smallest: usize, odd: bool) -> usize {
        let area = f64::from(p) * (self.h * self.w) as f64;
        let mut s = (area.sqrt().round() as usize).max(smallest);
        if odd && s.is_multiple_of(2) {
            s += 1;
        }
        s.min(self.h.min(self.w)).max(1)
    }
}

fn sign(rng: &mut ChaCha8Rng) -> f32 {
    if rng.random::<bool>() {
        1.0
    } else {
        -1.0
    }
}

/// Top-left corner of a window of side `s`, uniform over the positions the reference uses.
fn corner(rng: &mut ChaCha8Rng, g: Geometry, s: usize) -> (usize, usize) {
    let row = rng.random_range(0..(g.h - s).max(1));
    let col = rng.random_range(0..(g.w - s).max(1));
    (row, col)
}

/// `rows × cols` of concentric rectangles weighted 1/(k+1)², unit L2 norm.
fn eta_rectangles(rows: usize, cols: usize) -> Vec<f64> {
    let mut delta = vec![0.0f64; rows * cols];
    if rows == 0 || cols == 0 {
        return delta;
    }
    let (mut r0, mut c0) = ((rows / 2) as isize, (cols / 2) as isize);
    for k in 0..(rows / 2 + 1).max(cols / 2 + 1) {
        let weight = 1.0 / ((k + 1) * (k + 1)) as f64;
        let r_end = (r0 + 2 * k as isize + 1).min(rows as isize);
        let c_end = (c0 + 2 * k as isize + 1).min(cols as isize);
        for r in r0.max(0)..r_end {
            for c in c0.max(0)..c_end {
                delta[r as usize * cols + c as usize] += weight;
            }
        }
        r0 -= 1;
        c0 -= 1;
    }
    normalise(&mut delta);
    delta
}

fn normalise(values: &mut [f64]) {
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
}

/// The L2 window pattern of side `s`: two opposite halves of rectangles, unit norm, transposed
/// with probability ½.
fn eta(s: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let top = eta_rectangles(s / 2, s);
    let bottom = eta_rectangles(s - s / 2, s);
    let mut delta: Vec<f64> = top.into_iter().chain(bottom.into_iter().map(|v| -v)).collect();
    normalise(&mut delta);
    if rng.random::<f64>() > 0.5 {
        let mut transposed = vec![0.0; s * s];
        for r in 0..s {
            for c in 0..s {
                transposed[c * s + r] = delta[r * s + c];
            }
        }
        delta = transposed;
    }
    delta
}

/// Margin `z_y − max_{j≠y} z_j` of each row of logits, and whether the row misclassifies.
fn margins(logits: &[Vec<f32>], predicted: &[u32], labels: &[u32]) -> (Vec<f32>, Vec<bool>) {
    logits
        .iter()
        .zip(predicted)
        .zip(labels)
        .map(|((row, &p), &y)| {
            let other = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != y as usize)
                .map(|(_, &z)| z)
                .fold(f32::NEG_INFINITY, f32::max);
            (row[y as usize] - other, p != y)
        })
        .unzip()
}

impl Square {
    /// Adversarial inputs and, per sample, the number of forward passes (queries) spent on it.
    pub fn perturb_with_queries(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<(Tensor, Vec<u32>), AttackError> {
        let checked = check_batch(model, inputs, labels)?;
        check_randomness(&checked, randomness)?;
        let n = checked.len();
        if self.threat.epsilon == 0.0 || n == 0 {
            return Ok((inputs.clone(), vec![0; n]));
        }
        let device = inputs.device();
        let sample_dims = inputs.dims()[1..].to_vec();
        let g = Geometry::of(&sample_dims);
        let d = g.len();
        let clean = inputs.flatten_all()?.to_vec1::<f32>()?;
        let labels_host = &checked.labels_host;
        let mut generators = randomness.generators(Stream::Restart(0));
        let epsilon = self.threat.epsilon;

        // The clean pass: samples already misclassified are done.
        let (_, clean_wrong) = self.query(model, inputs, labels_host, &(0..n).collect::<Vec<_>>())?;
        let mut queries = vec![1u32; n];
        let mut best = clean.clone();
        let mut done = clean_wrong;

        // Starting points for the others.
        let todo: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        let mut start = Vec::with_capacity(todo.len() * d);
        for &i in &todo {
            let x = &clean[i * d..(i + 1) * d];
            let rng = &mut generators[i];
            match self.threat.norm {
                Norm::Linf => {
                    let mut point = vec![0f32; d];
                    for ch in 0..g.c {
                        for col in 0..g.w {
                            let s = sign(rng) * epsilon;
                            for row in 0..g.h {
                                let k = g.at(ch, row, col);
                                point[k] = x[k] + s;
                            }
                        }
                    }
                    start.extend(point);
                }
                Norm::L2 => {
                    let side = (g.h / 5).max(1);
                    let offset = g.h.saturating_sub(side * 5) / 2;
                    let mut delta = vec![0f64; d];
                    let mut row = offset;
                    while row + side <= g.h {
                        let mut col = offset.min(g.w.saturating_sub(side));
                        while col + side <= g.w {
                            let pattern = eta(side, rng);
                            for ch in 0..g.c {
                                let s = f64::from(sign(rng));
                                for r in 0..side {
                                    for c in 0..side {
                                        delta[g.at(ch, row + r, col + c)] += pattern[r * side + c] * s;
                                    }
                                }
                            }
                            col += side;
                        }
                        row += side;
                    }
                    normalise(&mut delta);
                    start.extend(
                        x.iter()
                            .zip(&delta)
                            .map(|(x, v)| x + (v * f64::from(epsilon)) as f32),
                    );
                }
            }
        }
        let mut margin = vec![f32::INFINITY; n];
        if !todo.is_empty() {
            let feasible = self.feasible(&clean, &todo, &sample_dims, device)?;
            let points = feasible.project(&rows_tensor(start, todo.len(), &sample_dims, device)?)?;
            let (m, wrong) = self.query(model, &points, labels_host, &todo)?;
            let points = points.flatten_all()?.to_vec1::<f32>()?;
            for (k, &i) in todo.iter().enumerate() {
                queries[i] += 1;
                best[i * d..(i + 1) * d].copy_from_slice(&points[k * d..(k + 1) * d]);
                margin[i] = m[k];
                done[i] = wrong[k];
            }
        }

        let mut active: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        let mut feasible = self.feasible(&clean, &active, &sample_dims, device)?;
        let mut iteration = 0u32;
        while !active.is_empty() {
            active.retain(|&i| queries[i] < self.queries);
            let still: Vec<usize> = active.iter().copied().filter(|&i| !done[i]).collect();
            if still.is_empty() {
                break;
            }
            if still.len() != active.len() {
                active = still;
                feasible = self.feasible(&clean, &active, &sample_dims, device)?;
            }
            let p = p_schedule(self.p_init, iteration);
            let mut proposals = Vec::with_capacity(active.len() * d);
            for &i in &active {
                let x = &clean[i * d..(i + 1) * d];
                let current = &best[i * d..(i + 1) * d];
                let rng = &mut generators[i];
                proposals.extend(match self.threat.norm {
                    Norm::Linf => propose_linf(g, x, current, epsilon, p, rng),
                    Norm::L2 => propose_l2(g, x, current, epsilon, p, rng),
                });
            }
            let points = feasible.project(&rows_tensor(proposals, active.len(), &sample_dims, device)?)?;
            let (m, wrong) = self.query(model, &points, labels_host, &active)?;
            let points = points.flatten_all()?.to_vec1::<f32>()?;
            for (k, &i) in active.iter().enumerate() {
                queries[i] += 1;
                if wrong[k] || m[k] < margin[i] {
                    margin[i] = m[k];
                    best[i * d..(i + 1) * d].copy_from_slice(&points[k * d..(k + 1) * d]);
                    done[i] = wrong[k];
                }
            }
            iteration += 1;
        }
        Ok((rows_tensor(best, n, &sample_dims, device)?, queries))
    }

    fn feasible(
        &self,
        clean: &[f32],
        positions: &[usize],
        sample_dims: &[usize],
        device: &Device,
    ) -> Result<FeasibleSet, AttackError> {
        let d: usize = sample_dims.iter().product();
        let rows: Vec<f32> = positions
            .iter()
            .flat_map(|&i| clean[i * d..(i + 1) * d].iter().copied())
            .collect();
        FeasibleSet::new(&rows_tensor(rows, positions.len(), sample_dims, device)?, self.threat)
    }

    /// One forward pass: margins and misclassification of the samples `positions`.
    fn query(
        &self,
        model: &dyn Model,
        points: &Tensor,
        labels: &[u32],
        positions: &[usize],
    ) -> Result<(Vec<f32>, Vec<bool>), AttackError> {
        let logits = model.forward(points)?;
        let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        let labels: Vec<u32> = positions.iter().map(|&i| labels[i]).collect();
        Ok(margins(&logits, &predicted, &labels))
    }
}

fn rows_tensor(
    values: Vec<f32>,
    rows: usize,
    sample_dims: &[usize],
    device: &Device,
) -> Result<Tensor, AttackError> {
    let mut dims = vec![rows];
    dims.extend_from_slice(sample_dims);
    Ok(Tensor::from_vec(values, dims, device)?)
}

/// L∞ proposal: one window, each channel's values set to `x ± ε` (from the current point
/// moved by ±2ε and clipped to the ball), one sign per channel.
fn propose_linf(
    g: Geometry,
    x: &[f32],
    current: &[f32],
    epsilon: f32,
    p: f32,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let s = g.side(p, 1, false);
    let (row, col) = corner(rng, g, s);
    let mut out = current.to_vec();
    for ch in 0..g.c {
        let shift = 2.0 * epsilon * sign(rng);
        for r in row..row + s {
            for c in col..col + s {
                let k = g.at(ch, r, c);
                out[k] = (current[k] + shift).clamp(x[k] - epsilon, x[k] + epsilon);
            }
        }
    }
    out
}

/// L2 proposal: the perturbation's mass in two windows is redistributed into the first, with
/// a fresh centre-heavy pattern added, and the whole perturbation rescaled to norm ε.
fn propose_l2(
    g: Geometry,
    x: &[f32],
    current: &[f32],
    epsilon: f32,
    p: f32,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let s = g.side(p, 3, true);
    let (r1, c1) = corner(rng, g, s);
    let (r2, c2) = corner(rng, g, s);
    let mut delta: Vec<f64> = current
        .iter()
        .zip(x)
        .map(|(a, b)| f64::from(a - b))
        .collect();
    let eps = f64::from(epsilon);
    let image_norm = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
    let in_window = |r: usize, c: usize, r0: usize, c0: usize| {
        r >= r0 && r < r0 + s && c >= c0 && c < c0 + s
    };
    let pattern = eta(s, rng);
    let mut new_windows = Vec::with_capacity(g.c);
    for ch in 0..g.c {
        let mut window_1 = 0.0f64;
        let mut windows = 0.0f64;
        for r in 0..g.h {
            for c in 0..g.w {
                let v = delta[g.at(ch, r, c)];
                if in_window(r, c, r1, c1) {
                    window_1 += v * v;
                }
                if in_window(r, c, r1, c1) || in_window(r, c, r2, c2) {
                    windows += v * v;
                }
            }
        }
        let (window_1, windows) = (window_1.sqrt(), windows.sqrt());
        let flip = f64::from(sign(rng));
        let mut fresh: Vec<f64> = (0..s * s)
            .map(|k| {
                let old = delta[g.at(ch, r1 + k / s, c1 + k % s)] / (1e-12 + window_1);
                pattern[k] * flip + old
            })
            .collect();
        let fresh_norm = fresh.iter().map(|v| v * v).sum::<f64>().sqrt();
        let target =
            ((eps * eps - image_norm * image_norm).max(0.0) / g.c as f64 + windows * windows).sqrt();
        fresh.iter_mut().for_each(|v| *v = *v / (1e-12 + fresh_norm) * target);
        new_windows.push(fresh);
    }
    for (ch, fresh) in new_windows.into_iter().enumerate() {
        for r in r2..r2 + s {
            for c in c2..c2 + s {
                delta[g.at(ch, r, c)] = 0.0;
            }
        }
        for (k, v) in fresh.into_iter().enumerate() {
            delta[g.at(ch, r1 + k / s, c1 + k % s)] = v;
        }
    }
    normalise(&mut delta);
    x.iter()
        .zip(&delta)
        .map(|(x, v)| (f64::from(*x) + v * eps).clamp(0.0, 1.0) as f32)
        .collect()
}

impl Attack for Square {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    fn objective(&self) -> AttackObjective {
        AttackObjective {
            loss: gauntlet_models::Loss::CwMargin,
            target: None,
        }
    }

    /// At most `queries` forward passes and one for the clean check; no gradients.
    fn passes_per_sample(&self) -> Passes {
        Passes::forwards(u64::from(self.queries) + 1)
    }

    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        Ok(self
            .perturb_with_queries(model, inputs, labels, randomness)?
            .0)
    }

    /// Reports each sample's query count.
    fn perturb_traced(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<crate::Traced, AttackError> {
        let (adversarial, queries) = self.perturb_with_queries(model, inputs, labels, randomness)?;
        Ok(crate::Traced {
            adversarial,
            traces: queries
                .into_iter()
                .map(|q| crate::SampleTrace {
                    queries: Some(q),
                    broken_at: None,
                    broken_by: None,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_schedule_is_the_papers() {
        assert_eq!(p_schedule(0.8, 0), 0.8);
        assert_eq!(p_schedule(0.8, 10), 0.8);
        assert_eq!(p_schedule(0.8, 11), 0.4);
        assert_eq!(p_schedule(0.8, 200), 0.2);
        assert_eq!(p_schedule(0.8, 201), 0.1);
        assert_eq!(p_schedule(0.8, 4999), 0.8 / 128.0);
        assert_eq!(p_schedule(0.8, 9000), 0.8 / 512.0);
        // On a 28×28 image: the first windows are 25 pixels wide, as √(0.8·784) rounds to 25.
        let g = Geometry { c: 1, h: 28, w: 28 };
        assert_eq!(g.side(0.8, 1, false), 25);
        assert_eq!(g.side(0.8 / 512.0, 1, false), 1);
        assert_eq!(g.side(0.8 / 512.0, 3, true), 3);
    }

    #[test]
    fn the_l2_pattern_has_unit_norm_and_opposite_halves() {
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        for s in [1usize, 3, 5, 8] {
            let pattern = eta(s, &mut rng);
            let norm: f64 = pattern.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-12, "side {s}: norm {norm}");
            if s > 1 {
                assert!(pattern.iter().any(|&v| v > 0.0) && pattern.iter().any(|&v| v < 0.0));
            }
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [("queries = 0", "queries"), ("p_init = 0.0", "p_init"), ("p_init = 2.0", "p_init")] {
            match build(&toml::from_str(text).unwrap(), 0.1) {
                Err(AttackError::InvalidParameter { key: k, .. }) => assert_eq!(k, key),
                _ => panic!("{text} was accepted"),
            }
        }
    }
}
