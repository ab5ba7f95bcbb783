//! The evasion-attack registry.
//!
//! Adding an attack: write `src/evasion/<name>.rs` (doc template, `Params`, the attack, `pub
//! const ENTRY`, known-answer tests) and add `<name>` to the `register_attacks!` line below.
//! That line is the only edit outside the new file: the attack then appears in `gauntlet list
//! attacks`, in `docs/attacks.md`, in suite files and in the conformance suite.

use crate::AttackEntry;

/// Declare each attack module and list its `ENTRY` in [`ATTACKS`], in the order given.
macro_rules! register_attacks {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every evasion attack, in registry order.
        pub const ATTACKS: &[&AttackEntry] = &[$(&$module::ENTRY),*];
    };
}

register_attacks! { fgsm, pgd, apgd, apgd_t, square, deepfool, cw_l2, fab_t, hop_skip_jump, standard }
