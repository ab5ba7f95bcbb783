//! Number formatting shared by the HTML page and the plots, so both say the same thing.

use crate::schema::Proportion;

/// A fraction as a percentage with one decimal: `0.9234` → `92.3%`.
pub(crate) fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// The 95% interval of `p` as a distance from its value, in percentage points.
///
/// Wilson intervals are asymmetric (very much so near 0% and 100%), so this prints `±1.6` only
/// when both sides agree at one decimal and `+1.5 / −1.8` otherwise, rather than hiding the
/// asymmetry.
pub(crate) fn ci_plus_minus(p: &Proportion) -> String {
    let up = format!("{:.1}", (p.ci95_high - p.value).max(0.0) * 100.0);
    let down = format!("{:.1}", (p.value - p.ci95_low).max(0.0) * 100.0);
    if up == down {
        format!("±{up}")
    } else {
        format!("+{up} / −{down}")
    }
}

/// The 95% interval as `[90.6, 93.8]`, for tooltips and captions.
pub(crate) fn ci_range(p: &Proportion) -> String {
    format!(
        "95% CI [{:.1}%, {:.1}%]",
        p.ci95_low * 100.0,
        p.ci95_high * 100.0
    )
}

/// `value` with at most `digits` significant digits and no trailing zeros: ε = 8/255 →
/// `0.03137`, 0.1 → `0.1`, 12.5 → `12.5`, 0 → `0`.
pub(crate) fn significant(value: f64, digits: usize) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor();
    // Clamped to a sane range so a denormal or huge value cannot ask for hundreds of decimals.
    let decimals = (digits as f64 - 1.0 - magnitude).clamp(0.0, 12.0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Seconds for humans: `0.042 s`, `3.21 s`, `2 min 05 s`.
pub(crate) fn seconds(value: f64) -> String {
    if value < 60.0 {
        format!("{} s", significant(value, 3))
    } else {
        let whole = value.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(value: f64, low: f64, high: f64) -> Proportion {
        Proportion {
            value,
            successes: 0,
            total: 0,
            ci95_low: low,
            ci95_high: high,
        }
    }

    #[test]
    fn percent_has_one_decimal() {
        assert_eq!(percent(0.9234), "92.3%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.0), "0.0%");
    }

    #[test]
    fn symmetric_interval_is_plus_minus() {
        assert_eq!(ci_plus_minus(&p(0.5, 0.45, 0.55)), "±5.0");
    }

    #[test]
    fn asymmetric_interval_shows_both_sides() {
        assert_eq!(ci_plus_minus(&p(0.0, 0.0, 0.037)), "+3.7 / −0.0");
    }

    #[test]
    fn significant_digits_trim_zeros() {
        assert_eq!(significant(8.0 / 255.0, 4), "0.03137");
        assert_eq!(significant(0.1, 4), "0.1");
        assert_eq!(significant(0.3, 4), "0.3");
        assert_eq!(significant(12.5, 4), "12.5");
        assert_eq!(significant(1234.0, 3), "1234");
        assert_eq!(significant(0.0, 4), "0");
    }

    #[test]
    fn seconds_switch_to_minutes() {
        assert_eq!(seconds(3.214), "3.21 s");
        assert_eq!(seconds(125.0), "2 min 05 s");
    }
}
