//! Hub typosquatting: a model id that looks like a well-known one but is not it.
//!
//! Attackers publish `bert-base-uncassed`, `meta-Ilama/…` (capital I for l) or `gogle/…` next to
//! the real repositories and wait for a typo in a training script. An id is compared with a list
//! of well-known ids after folding what a reader cannot tell apart — case (hub ids resolve
//! case-insensitively), look-alike letters from other scripts, `0`/`o`, `1`/`l`/`I`, `rn`/`m`,
//! `vv`/`w`, and `-`/`_`/`.` — and by Damerau–Levenshtein distance (a swap of two neighbouring
//! letters is one edit). The exact id (up to case) is never a finding.

use crate::{Finding, Location, RuleId, Severity};

/// Well-known model ids on the Hugging Face hub: the most downloaded and most imitated. A team
/// extends it with its own list (`gauntlet scan --known-model-ids FILE`, suite
/// `model.known_ids`).
pub const WELL_KNOWN_MODEL_IDS: &[&str] = &[
    "bert-base-uncased",
    "bert-base-cased",
    "bert-large-uncased",
    "google-bert/bert-base-uncased",
    "google-bert/bert-base-cased",
    "distilbert-base-uncased",
    "distilbert/distilbert-base-uncased",
    "roberta-base",
    "FacebookAI/roberta-base",
    "FacebookAI/xlm-roberta-base",
    "xlm-roberta-base",
    "gpt2",
    "openai-community/gpt2",
    "t5-small",
    "t5-base",
    "google-t5/t5-small",
    "google/flan-t5-base",
    "google/vit-base-patch16-224",
    "google/gemma-2b",
    "google/gemma-7b",
    "microsoft/resnet-50",
    "microsoft/phi-2",
    "microsoft/deberta-v3-base",
    "facebook/opt-125m",
    "facebook/bart-large-cnn",
    "facebook/dinov2-base",
    "openai/clip-vit-base-patch32",
    "openai/clip-vit-large-patch14",
    "openai/whisper-small",
    "openai/whisper-large-v3",
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-7b-chat-hf",
    "meta-llama/Meta-Llama-3-8B",
    "meta-llama/Meta-Llama-3-8B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "mistralai/Mistral-7B-v0.1",
    "mistralai/Mistral-7B-Instruct-v0.2",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "Qwen/Qwen2-7B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "tiiuae/falcon-7b",
    "EleutherAI/gpt-j-6b",
    "EleutherAI/pythia-160m",
    "bigscience/bloom-560m",
    "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-mpnet-base-v2",
    "BAAI/bge-base-en-v1.5",
    "intfloat/e5-base-v2",
    "stabilityai/stable-diffusion-2-1",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "runwayml/stable-diffusion-v1-5",
    "CompVis/stable-diffusion-v1-4",
    "timm/resnet50.a1_in1k",
    "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "deepseek-ai/deepseek-coder-6.7b-instruct",
    "cardiffnlp/twitter-roberta-base-sentiment-latest",
    "distilbert-base-uncased-finetuned-sst-2-english",
];

/// The edit distance at or below which an id counts as a look-alike of a known one: one edit
/// for short ids (where two edits reach unrelated names), two from 10 characters on.
fn threshold(len: usize) -> usize {
    if len < 10 {
        1
    } else {
        2
    }
}

/// What a reader sees: lower case, confusable characters folded, separators unified.
fn skeleton(id: &str) -> String {
    let mut folded = String::with_capacity(id.len());
    for c in id.chars().flat_map(char::to_lowercase) {
        folded.push(match c {
            // Cyrillic and Greek letters that render as Latin ones.
            'а' | 'α' => 'a',
            'с' | 'ϲ' => 'c',
            'ԁ' => 'd',
            'е' | 'ε' => 'e',
            'ɡ' => 'g',
            'һ' => 'h',
            'і' | 'ı' | 'ι' => 'i',
            'ј' => 'j',
            'κ' | 'к' => 'k',
            'м' => 'm',
            'ո' | 'η' => 'n',
            'о' | 'ο' | '0' => 'o',
            'р' | 'ρ' => 'p',
            'ԛ' => 'q',
            'ѕ' => 's',
            'т' | 'τ' => 't',
            'υ' => 'u',
            'ν' => 'v',
            'ѡ' => 'w',
            'х' | 'χ' => 'x',
            'у' | 'γ' => 'y',
            // Digits and letters that pass for each other in most fonts.
            '1' | '|' | 'ӏ' => 'l',
            '_' | '.' | '–' | '—' => '-',
            other => other,
        });
    }
    // `i` and `l` are one glyph in many sans-serif fonts (`Ilama` vs `llama`).
    let folded = folded.replace('i', "l");
    folded.replace("rn", "m").replace("vv", "w")
}

/// Damerau–Levenshtein distance (optimal string alignment) over characters.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[n][m]
}

/// Ids longer than this are not compared (the distance table is quadratic); hub ids are at
/// most 96 characters.
const MAX_ID_CHARS: usize = 256;

/// Findings for `id` against `known` (the built-in list plus a team's own): nothing when it is
/// a known id up to case; `model-id-lookalike` when it differs from one only by characters a
/// reader cannot tell apart; `model-id-typosquat` when it is a small edit away from one.
pub fn check_model_id(id: &str, known: &[String]) -> Vec<Finding> {
    let location = Location {
        file: format!("model id `{id}`"),
        ..Location::default()
    };
    let id_lower = id.to_lowercase();
    if known.iter().any(|k| k.to_lowercase() == id_lower) {
        return Vec::new();
    }
    if id.chars().count() > MAX_ID_CHARS {
        return vec![Finding {
            severity: Severity::High,
            rule: RuleId::ModelIdTyposquat,
            message: format!(
                "the model id is {} characters long; hub ids have at most 96, so it cannot be checked",
                id.chars().count()
            ),
            location,
        }];
    }
    let id_skeleton: Vec<char> = skeleton(id).chars().collect();
    let mut findings = Vec::new();
    for known_id in known {
        let known_skeleton: Vec<char> = skeleton(known_id).chars().collect();
        if known_skeleton.len() > MAX_ID_CHARS {
            continue;
        }
        if id_skeleton == known_skeleton {
            findings.push(Finding {
                severity: Severity::High,
                rule: RuleId::ModelIdLookalike,
                message: format!(
                    "`{id}` reads as the well-known `{known_id}` but is a different id (look-alike characters or separators); check which repository you meant"
                ),
                location: location.clone(),
            });
            continue;
        }
        // Ids that differ only in digits are usually other sizes or versions of a family
        // (`gemma-2b`, `gemma-9b`), not typos.
        let letters = |s: &[char]| s.iter().filter(|c| !c.is_ascii_digit()).collect::<String>();
        if letters(&id_skeleton) == letters(&known_skeleton) {
            continue;
        }
        let distance = edit_distance(&id_skeleton, &known_skeleton);
        if distance <= threshold(known_skeleton.len()) {
            findings.push(Finding {
                severity: Severity::High,
                rule: RuleId::ModelIdTyposquat,
                message: format!(
                    "`{id}` is {distance} edit{} away from the well-known `{known_id}`; a typo here downloads someone else's model",
                    if distance == 1 { "" } else { "s" }
                ),
                location: location.clone(),
            });
        }
    }
    if findings.is_empty() && !id.is_ascii() {
        findings.push(Finding {
            severity: Severity::Medium,
            rule: RuleId::ModelIdLookalike,
            message: format!(
                "`{id}` contains non-ASCII characters; hub ids are ASCII, so it is a look-alike of something"
            ),
            location,
        });
    }
    findings
}

/// The built-in list plus `extra` (one id per line; `#` starts a comment; blank lines ignored).
pub fn known_ids_with(extra: &str) -> Vec<String> {
    WELL_KNOWN_MODEL_IDS
        .iter()
        .map(|s| s.to_string())
        .chain(
            extra
                .lines()
                .map(|line| line.split('#').next().unwrap_or("").trim())
                .filter(|line| !line.is_empty())
                .map(str::to_string),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str) -> Vec<(RuleId, String)> {
        check_model_id(id, &known_ids_with(""))
            .into_iter()
            .map(|f| (f.rule, f.message))
            .collect()
    }

    #[test]
    fn known_ids_pass_whatever_their_case() {
        for id in WELL_KNOWN_MODEL_IDS {
            assert!(check(id).is_empty(), "{id}: {:?}", check(id));
        }
        assert!(check("META-LLAMA/llama-2-7b-hf").is_empty());
    }

    #[test]
    fn typos_swaps_doubles_and_separator_swaps_are_flagged() {
        for (id, resembles) in [
            ("bert-base-uncassed", "bert-base-uncased"),
            ("bert-base-uncsaed", "bert-base-uncased"),
            ("meta-llama/Llama-2-7b-hff", "meta-llama/Llama-2-7b-hf"),
            ("mistralai/Mistral_7B_v0.1", "mistralai/Mistral-7B-v0.1"),
            ("gogle/gemma-7b", "google/gemma-7b"),
            ("openai/whisper-smal", "openai/whisper-small"),
        ] {
            let findings = check(id);
            assert!(
                findings
                    .iter()
                    .any(|(_, m)| m.contains(&format!("`{resembles}`"))),
                "{id}: {findings:?}"
            );
        }
    }

    #[test]
    fn homoglyphs_are_look_alikes() {
        // Capital I for l, Cyrillic а and о, zero for o, rn for m.
        for id in [
            "meta-Ilama/Llama-2-7b-hf",
            "meta-llаma/Llama-2-7b-hf",
            "google/gemma-7b".replace('o', "0").as_str(),
            "microsoft/phi-2".replace('m', "rn").as_str(),
            "sentence-transformers/all-MiniLM-L6-v2"
                .replace('o', "о")
                .as_str(),
        ] {
            let findings = check(id);
            assert!(
                findings
                    .iter()
                    .any(|(rule, _)| *rule == RuleId::ModelIdLookalike),
                "{id}: {findings:?}"
            );
        }
    }

    #[test]
    fn unrelated_ids_and_a_teams_own_ids_pass() {
        assert!(check("my-org/fraud-detector-v3").is_empty());
        assert!(check("acme/resnet-50-finetuned-cars").is_empty());
        // Another size of a known family is not a typo.
        assert!(check("google/gemma-9b").is_empty());
        let known = known_ids_with("# ours\nacme/bert-base-uncasedx\n");
        assert!(check_model_id("acme/bert-base-uncasedx", &known).is_empty());
    }

    #[test]
    fn distance_counts_a_swap_as_one_edit() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(edit_distance(&chars("abcd"), &chars("abdc")), 1);
        assert_eq!(edit_distance(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(edit_distance(&chars(""), &chars("abc")), 3);
    }
}
