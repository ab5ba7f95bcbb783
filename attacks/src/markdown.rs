//! `docs/attacks.md`, generated from the registry so the reference cannot drift from the code.

use std::fmt::Write as _;

use crate::{AttackEntry, AttackKind, BudgetSemantics, ModelAccess, ATTACKS};

/// The attack reference as Markdown: one section per registry entry with its summary,
/// reference and parameter table. `docs/attacks.md` is this text (a test fails when it is
/// stale); `gauntlet list attacks --markdown` prints it.
pub fn attacks_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Attacks\n\n");
    out.push_str(
        "<!-- Generated from the attack registry (attacks/src/evasion/) by \
         `gauntlet list attacks --markdown`; do not edit by hand. \
         `cargo test -p gauntlet-attacks` fails when this file is stale; \
         `GAUNTLET_BLESS_DOCS=1 cargo test -p gauntlet-attacks docs` rewrites it. -->\n\n",
    );
    out.push_str(
        "Every attack is configured by an `[[attack]]` table in a suite file: `name` picks the \
         attack, `epsilons` lists the budgets, and every other key is one of the attack's \
         parameters below. Unknown keys are errors. Inputs are pixels in [0, 1]; every \
         adversarial input stays inside the ε-ball of the attack's norm around its clean input \
         and inside [0, 1], exactly in f32.\n",
    );
    for entry in ATTACKS {
        write_entry(&mut out, entry);
    }
    out.push_str(CROSS_CHECKS);
    out
}

/// How the attacks are checked against the implementations users know.
const CROSS_CHECKS: &str = "
## Cross-checks against reference implementations

- `fgsm`, `pgd`: against torchattacks 3.5.1 on the same PyTorch-trained weights and images, \
  with deterministic settings (`attacks/tests/it/torchattacks.rs`; fixtures, the script that \
  made them and the observed agreement in `attacks/tests/fixtures/torchattacks/`).
- `deepfool`: against torchattacks 3.5.1 (L2, 50 steps, overshoot 0.02) on the same weights \
  and images: the minimal L2 norms agree within 1 % on every image (observed at most 0.44 %, \
  gauntlet's the larger, as the authors' slack and total-perturbation overshoot that it follows \
  predict); torchattacks' outputs end within rounding of the boundary.
- `cw_l2`: against ART 1.20.1's `CarliniL2Method` (binary search over c) and torchattacks' \
  `CW` (one c) on the same weights and images (`attacks/tests/fixtures/torchattacks/cw.json`, \
  `make_cw_fixtures.py`). At c = 1, 100 steps, gauntlet and torchattacks break the same 10 \
  images with norms within 1.6·10⁻⁴ relative. With gauntlet's defaults (9 values of c × 100 \
  Adam steps) against ART's at the same settings, 12 of 14 images are broken by both, \
  gauntlet's norm being the smaller on 11; each side breaks one image the other does not (ART's \
  line search reaches further per step, its c never passes 2.56). The defaults are far from \
  converged: with 1,000 steps gauntlet breaks all 14, and the defaults' norms are a median 30 % \
  larger than those.
- `apgd` (cross-entropy and DLR) and `apgd_t`: against the AutoAttack reference \
  implementation (`pyautoattack` 0.2.0 on PyPI, the authors' package), 100 steps, one restart, \
  nine target classes, on the shipped Fashion-MNIST model and the first 200 images of the \
  bundled test subset. `benches/crosscheck_autoattack.py` runs the reference and writes \
  `attacks/tests/fixtures/autoattack/reference.json`; `attacks/tests/it/autoattack.rs` runs \
  gauntlet on the same images and requires every robust count within 4 images (2 %) of the \
  reference's: the two differ only in their random starts. Observed: L∞ ε = 0.02: APGD-CE \
  117 vs 116, APGD-DLR 117 vs 116, APGD-T 116 vs 117; ε = 0.04: APGD-CE 52 vs 53, APGD-DLR \
  53 vs 54 (gauntlet vs reference, images still correct of 200, 183 correct before).
- `square`: no reference comparison yet; its schedule and window sizes are unit-tested against \
  the paper, and it is tested to break the shipped model within its query budget.
- `hop_skip_jump`: no reference comparison yet. It follows the authors' algorithm and \
  schedules (start by uniform noise and a blended binary search, binary search to the \
  boundary at θ = γ/d^{3/2} or γ/d², `init_evals·√t` probes, geometric step search from \
  dist/√t); on a linear model it converges to the closed-form smallest L2 perturbation within \
  1 % in both L2 and L∞ (observed 0.7 % and 0.07 %), and a model that refuses logits and gradients and counts queries \
  shows it uses labels only and never passes its budget (`src/evasion/hop_skip_jump.rs`). It \
  is a minimal-norm attack: the algorithm has no ε, so one unbounded run gives each sample's \
  smallest perturbation found within the query budget, and robust accuracy at every ε is read \
  from it (as for `deepfool` and `cw_l2`); the fixed-ε form would spend the whole budget again \
  at each ε for the same answer. Untargeted only.
";

fn write_entry(out: &mut String, entry: &AttackEntry) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "\n## `{name}`\n\n{summary}.\n\n**Reference:** {reference}.\n\n\
         **Kind:** {kind}. **Needs:** {needs}. **Budget:** {budget}.\n\n**Parameters:**\n\n",
        name = entry.name,
        summary = entry.summary.trim_end_matches('.'),
        reference = entry.reference.trim_end_matches('.'),
        kind = match entry.kind {
            AttackKind::SingleStep => "single step",
            AttackKind::Iterative => "iterative",
            AttackKind::MinimalNorm => "minimal norm",
        },
        needs = match entry.needs {
            ModelAccess::InputGradients => "input gradients (white box)",
            ModelAccess::Logits => "logits only (score-based black box)",
            ModelAccess::Labels => "predicted labels only (decision-based black box)",
        },
        budget = match entry.budget {
            BudgetSemantics::Bounded => "one run per ε; every output inside the ε-ball",
            BudgetSemantics::MinimalNorm => {
                "one unbounded run; each sample's smallest successful norm answers every ε"
            }
        },
    );
    out.push_str("| key | default | description |\n|---|---|---|\n");
    for parameter in entry.parameters {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} |",
            parameter.name,
            parameter.default,
            parameter.description.replace('|', "\\|"),
        );
    }
}
