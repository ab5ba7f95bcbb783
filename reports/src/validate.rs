//! Structural checks every writer runs before rendering.
//!
//! serde_json writes a NaN or an infinity as `null`, which then fails to read back, so a report
//! with a non-finite number would produce a `results.json` that `gauntlet report` cannot re-render.
//! Every output is meant to be a pure function of `results.json`, so all writers refuse such a
//! report up front, naming the offending field, instead of producing outputs that disagree.

use crate::error::ReportError;
use crate::schema::{
    AdversarialExample, ClassAccuracy, PerturbationStats, Proportion, RunReport,
    OLDEST_READABLE_SCHEMA_VERSION, SCHEMA_VERSION,
};

/// Most pixel values the gallery may hold, over all examples, originals and adversarials
/// together: 8 Mi values (32 MiB as f32, about 170 MB of pretty JSON). That is room for the
/// default eight examples of 3 × 256 × 256 images (3 Mi values), or one of 3 × 1024 × 1024
/// (6 Mi). A report past it is refused when read and when written, so a `results.json` cannot
/// make `gauntlet report` hold more than this; the runner stops adding examples before it.
pub const MAX_GALLERY_VALUES: usize = 8 << 20;

impl RunReport {
    /// Checks what the type system cannot: the schema version, that every number is finite, that
    /// proportions and their intervals lie in [0, 1], that each gallery example's pixel count
    /// matches its `[C, H, W]` shape with C = 1 (grey) or 3 (RGB), and that the gallery holds
    /// at most [`MAX_GALLERY_VALUES`] values.
    pub fn validate(&self) -> Result<(), ReportError> {
        if !(OLDEST_READABLE_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&self.schema_version) {
            return Err(invalid(
                "schema_version",
                format!(
                    "is {}, but this gauntlet reads schema_version {OLDEST_READABLE_SCHEMA_VERSION} to {SCHEMA_VERSION}",
                    self.schema_version
                ),
            ));
        }
        proportion("clean.accuracy", &self.clean.accuracy)?;
        finite("clean.mean_loss", self.clean.mean_loss)?;
        per_class("clean.per_class", &self.clean.per_class)?;
        for (i, attack) in self.attacks.iter().enumerate() {
            let at = |field: &str| format!("attacks[{i}].{field}");
            non_negative(&at("epsilon"), attack.epsilon)?;
            proportion(&at("robust_accuracy"), &attack.robust_accuracy)?;
            proportion(&at("success_rate"), &attack.success_rate)?;
            finite(&at("mean_loss"), attack.mean_loss)?;
            perturbation(&at("perturbation"), &attack.perturbation)?;
            per_class(&at("per_class"), &attack.per_class)?;
            non_negative(&at("seconds"), attack.seconds)?;
            // Each member is credited only with what it broke first, so the credits partition
            // the samples the ensemble broke.
            let credited: usize = attack.broken_by.iter().map(|c| c.broken).sum();
            if !attack.broken_by.is_empty() && credited != attack.success_rate.successes {
                return Err(invalid(
                    &at("broken_by"),
                    format!(
                        "credits {credited} broken samples to its members, but the attack broke {}",
                        attack.success_rate.successes
                    ),
                ));
            }
        }
        for (i, worst) in self.worst_case.iter().enumerate() {
            let at = |field: &str| format!("worst_case[{i}].{field}");
            non_negative(&at("epsilon"), worst.epsilon)?;
            proportion(&at("robust_accuracy"), &worst.robust_accuracy)?;
            per_class(&at("per_class"), &worst.per_class)?;
        }
        for (i, gate) in self.gates.iter().enumerate() {
            finite(&format!("gates[{i}].threshold"), gate.threshold)?;
            finite(&format!("gates[{i}].actual"), gate.actual)?;
        }
        if let Some(baseline) = &self.baseline {
            for (i, row) in baseline.rows.iter().enumerate() {
                let at = |field: &str| format!("baseline.rows[{i}].{field}");
                if let Some(previous) = &row.previous {
                    proportion(&at("previous"), previous)?;
                }
                if let Some(now) = &row.now {
                    proportion(&at("now"), now)?;
                }
                if let Some(change) = &row.change {
                    finite(&at("change.delta"), change.delta)?;
                    finite(&at("change.ci95_low"), change.ci95_low)?;
                    finite(&at("change.ci95_high"), change.ci95_high)?;
                    unit_interval(&at("change.p_value"), change.p_value)?;
                }
            }
        }
        let mut gallery_values = 0_usize;
        for (i, example) in self.examples.iter().enumerate() {
            gallery_values = gallery_values
                .saturating_add(example.original.len())
                .saturating_add(example.adversarial.len());
            if gallery_values > MAX_GALLERY_VALUES {
                return Err(invalid(
                    &format!("examples[{i}]"),
                    format!(
                        "brings the gallery to {gallery_values} pixel values, more than the \
                         {MAX_GALLERY_VALUES} a report may hold"
                    ),
                ));
            }
            self::example(&format!("examples[{i}]"), example)?;
        }
        if let Some(backdoor) = &self.backdoor {
            crate::backdoor::validate(backdoor)?;
        }
        crate::detector::validate(&self.detectors)?;
        crate::detector::validate_drift(&self.output_drift)?;
        if let Some(probing) = &self.probing {
            probing.validate()?;
        }
        let t = &self.timings;
        non_negative("timings.load_seconds", t.load_seconds)?;
        non_negative("timings.clean_seconds", t.clean_seconds)?;
        non_negative("timings.attack_seconds", t.attack_seconds)?;
        non_negative("timings.total_seconds", t.total_seconds)?;
        Ok(())
    }
}

/// Channels, height and width of a gallery example, once its shape has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageDims {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// The checked dimensions of `example`; `field` names it in the error.
pub(crate) fn example_dims(
    field: &str,
    example: &AdversarialExample,
) -> Result<ImageDims, ReportError> {
    let [channels, height, width] = example.shape[..] else {
        return Err(invalid(
            &format!("{field}.shape"),
            format!("is {:?}, expected [C, H, W]", example.shape),
        ));
    };
    if channels != 1 && channels != 3 {
        return Err(invalid(
            &format!("{field}.shape"),
            format!(
                "is {:?}: only 1 (grey) or 3 (RGB) channels can be shown",
                example.shape
            ),
        ));
    }
    if height == 0 || width == 0 {
        return Err(invalid(
            &format!("{field}.shape"),
            format!("is {:?}: the image is empty", example.shape),
        ));
    }
    let expected = channels
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| {
            invalid(
                &format!("{field}.shape"),
                format!("is {:?}: too large", example.shape),
            )
        })?;
    for (name, pixels) in [
        ("original", &example.original),
        ("adversarial", &example.adversarial),
    ] {
        if pixels.len() != expected {
            return Err(invalid(
                &format!("{field}.{name}"),
                format!(
                    "has {} values, but shape {:?} needs {expected}",
                    pixels.len(),
                    example.shape
                ),
            ));
        }
    }
    Ok(ImageDims {
        channels,
        height,
        width,
    })
}

fn example(field: &str, example: &AdversarialExample) -> Result<(), ReportError> {
    example_dims(field, example)?;
    non_negative(&format!("{field}.epsilon"), example.epsilon)?;
    for (name, pixels) in [
        ("original", &example.original),
        ("adversarial", &example.adversarial),
    ] {
        if let Some(at) = pixels.iter().position(|v| !v.is_finite()) {
            return Err(invalid(
                &format!("{field}.{name}[{at}]"),
                format!("is {}, not a finite pixel value", pixels[at]),
            ));
        }
    }
    Ok(())
}

pub(crate) fn invalid(field: &str, reason: String) -> ReportError {
    ReportError::InvalidReport {
        field: field.to_owned(),
        reason,
    }
}

pub(crate) fn finite(field: &str, value: f64) -> Result<(), ReportError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("is {value}; JSON cannot represent non-finite numbers"),
        ))
    }
}

pub(crate) fn non_negative(field: &str, value: f64) -> Result<(), ReportError> {
    finite(field, value)?;
    if value < 0.0 {
        return Err(invalid(field, format!("is {value}, expected ≥ 0")));
    }
    Ok(())
}

pub(crate) fn unit_interval(field: &str, value: f64) -> Result<(), ReportError> {
    finite(field, value)?;
    if !(0.0..=1.0).contains(&value) {
        return Err(invalid(
            field,
            format!("is {value}, expected a value in [0, 1]"),
        ));
    }
    Ok(())
}

pub(crate) fn proportion(field: &str, p: &Proportion) -> Result<(), ReportError> {
    unit_interval(&format!("{field}.value"), p.value)?;
    unit_interval(&format!("{field}.ci95_low"), p.ci95_low)?;
    unit_interval(&format!("{field}.ci95_high"), p.ci95_high)?;
    if p.ci95_low > p.ci95_high {
        return Err(invalid(
            field,
            format!(
                "has ci95_low {} above ci95_high {}",
                p.ci95_low, p.ci95_high
            ),
        ));
    }
    if p.successes > p.total {
        return Err(invalid(
            field,
            format!(
                "has {} successes out of only {} trials",
                p.successes, p.total
            ),
        ));
    }
    Ok(())
}

fn per_class(field: &str, classes: &[ClassAccuracy]) -> Result<(), ReportError> {
    for (i, class) in classes.iter().enumerate() {
        proportion(&format!("{field}[{i}].accuracy"), &class.accuracy)?;
    }
    Ok(())
}

fn perturbation(field: &str, stats: &PerturbationStats) -> Result<(), ReportError> {
    non_negative(&format!("{field}.mean"), stats.mean)?;
    non_negative(&format!("{field}.median"), stats.median)?;
    non_negative(&format!("{field}.max"), stats.max)?;
    non_negative(&format!("{field}.max_linf"), stats.max_linf)?;
    Ok(())
}
