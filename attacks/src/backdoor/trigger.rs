//! Triggers: a mask `m` (one value per pixel position, shared by the channels) and a pattern
//! `p` (one value per pixel and channel), stamped as `x′ = (1 − m)·x + m·p`.
//!
//! This one form covers every trigger gauntlet plants or looks for: a BadNets patch is a
//! 0/1 mask over a square with a constant or checkerboard pattern, a blended trigger is a
//! constant mask α over the whole image, and the trigger Neural Cleanse recovers is a free
//! mask and pattern. Keeping one type means the trigger a poisoning planted and the one a
//! scan recovered are compared (IoU, STRIP on the stamped inputs) without conversion.
//! With `m` and `p` in [0, 1] and `x` in [0, 1], the stamped image stays in [0, 1].

use rand::Rng;
use serde::Deserialize;

use crate::backdoor::images::{check_unit_interval, ImageSet};
use crate::{AttackError, SampleRandomness, Stream};

/// A trigger for images of one shape `[C, H, W]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    shape: [usize; 3],
    /// `H·W` values in [0, 1], row-major.
    mask: Vec<f32>,
    /// `C·H·W` values in [0, 1], channel-major as the images are.
    pattern: Vec<f32>,
}

/// Where a square patch sits: a named corner, the centre, or its top-left pixel
/// `[row, column]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PatchPosition {
    Named(NamedPosition),
    /// The patch's top-left pixel, `[row, column]`, counted from 0.
    At([usize; 2]),
}

/// The named patch positions: the four corners (flush with the border) and the centre
/// (rounded up and left when the free space is odd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedPosition {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
    Center,
}

impl NamedPosition {
    /// Every named position, in a fixed order (the known-trigger catalogue loops over it).
    pub const ALL: [NamedPosition; 5] = [
        NamedPosition::TopLeft,
        NamedPosition::TopRight,
        NamedPosition::BottomLeft,
        NamedPosition::BottomRight,
        NamedPosition::Center,
    ];

    /// The name as written in suite files.
    pub fn as_str(self) -> &'static str {
        match self {
            NamedPosition::TopLeft => "top_left",
            NamedPosition::TopRight => "top_right",
            NamedPosition::BottomLeft => "bottom_left",
            NamedPosition::BottomRight => "bottom_right",
            NamedPosition::Center => "center",
        }
    }
}

impl PatchPosition {
    /// The top-left pixel of a `size`×`size` patch in an `height`×`width` image. The caller
    /// has checked that the patch fits.
    fn top_left(self, size: usize, height: usize, width: usize) -> [usize; 2] {
        let (bottom, right) = (height - size, width - size);
        match self {
            PatchPosition::Named(NamedPosition::TopLeft) => [0, 0],
            PatchPosition::Named(NamedPosition::TopRight) => [0, right],
            PatchPosition::Named(NamedPosition::BottomLeft) => [bottom, 0],
            PatchPosition::Named(NamedPosition::BottomRight) => [bottom, right],
            PatchPosition::Named(NamedPosition::Center) => [bottom / 2, right / 2],
            PatchPosition::At(at) => at,
        }
    }
}

/// What fills a trigger's pattern, channel by channel.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// Every value the same.
    Solid(f32),
    /// 1 where row + column is even, 0 elsewhere (counted in the image, so a patch's
    /// checkerboard depends on where it sits).
    Checkerboard,
    /// 1 on even rows, 0 on odd rows.
    HorizontalStripes,
    /// 1 on even columns, 0 on odd columns.
    VerticalStripes,
    /// Independent uniform values in [0, 1) from a ChaCha8 generator keyed by the seed (the
    /// project's keyed generators, purpose `trigger noise`), so the same seed gives the same
    /// pattern on every machine.
    Noise { seed: u64 },
}

impl PatternKind {
    /// The full `C·H·W` pattern.
    pub fn fill(self, shape: [usize; 3]) -> Vec<f32> {
        let [channels, height, width] = shape;
        let at = |row: usize, column: usize| -> f32 {
            match self {
                PatternKind::Checkerboard => f32::from(u8::from((row + column).is_multiple_of(2))),
                PatternKind::HorizontalStripes => f32::from(u8::from(row.is_multiple_of(2))),
                PatternKind::VerticalStripes => f32::from(u8::from(column.is_multiple_of(2))),
                PatternKind::Solid(value) => value,
                PatternKind::Noise { .. } => 0.0,
            }
        };
        if let PatternKind::Noise { seed } = self {
            let mut rng = SampleRandomness::for_samples(seed, "trigger noise", [0])
                .generator(0, Stream::Custom(0));
            return (0..channels * height * width)
                .map(|_| rng.random::<f32>())
                .collect();
        }
        let mut values = Vec::with_capacity(channels * height * width);
        for _ in 0..channels {
            for row in 0..height {
                for column in 0..width {
                    values.push(at(row, column));
                }
            }
        }
        values
    }

    /// A short name for reports, e.g. `checkerboard`.
    pub fn describe(self) -> String {
        match self {
            PatternKind::Solid(value) => format!("solid {value}"),
            PatternKind::Checkerboard => "checkerboard".to_string(),
            PatternKind::HorizontalStripes => "horizontal stripes".to_string(),
            PatternKind::VerticalStripes => "vertical stripes".to_string(),
            PatternKind::Noise { seed } => format!("noise (seed {seed})"),
        }
    }
}

impl Trigger {
    /// A trigger from its mask (`H·W` values) and pattern (`C·H·W` values), all in [0, 1].
    pub fn new(shape: [usize; 3], mask: Vec<f32>, pattern: Vec<f32>) -> Result<Self, AttackError> {
        let [channels, height, width] = shape;
        if mask.len() != height * width {
            return Err(AttackError::ShapeMismatch {
                what: "trigger mask",
                expected: vec![height, width],
                actual: vec![mask.len()],
            });
        }
        if pattern.len() != channels * height * width {
            return Err(AttackError::ShapeMismatch {
                what: "trigger pattern",
                expected: vec![channels, height, width],
                actual: vec![pattern.len()],
            });
        }
        check_unit_interval(&mask)?;
        check_unit_interval(&pattern)?;
        Ok(Self {
            shape,
            mask,
            pattern,
        })
    }

    /// A `size`×`size` patch at `position` filled with `pattern` (BadNets, Gu et al. 2017).
    ///
    /// Errors name the suite key: `size` when the patch is empty or larger than the image,
    /// `position` when it does not fit where it is placed, `value` when a solid pattern is
    /// outside [0, 1].
    pub fn patch(
        shape: [usize; 3],
        size: usize,
        position: PatchPosition,
        pattern: PatternKind,
    ) -> Result<Self, AttackError> {
        let [_, height, width] = shape;
        if size == 0 || size > height || size > width {
            return Err(AttackError::invalid_parameter(
                "size",
                format!(
                    "a {size}×{size} patch does not fit in a {height}×{width} image \
                     (size must be between 1 and {})",
                    height.min(width)
                ),
            ));
        }
        let [top, left] = position.top_left(size, height, width);
        if top.saturating_add(size) > height || left.saturating_add(size) > width {
            return Err(AttackError::invalid_parameter(
                "position",
                format!(
                    "a {size}×{size} patch at row {top}, column {left} runs past the \
                     {height}×{width} image"
                ),
            ));
        }
        check_pattern(pattern)?;
        let mut mask = vec![0.0; height * width];
        for row in top..top + size {
            mask[row * width + left..row * width + left + size].fill(1.0);
        }
        Self::new(shape, mask, pattern.fill(shape))
    }

    /// `pattern` blended over the whole image with weight `alpha`: `x′ = (1 − α)·x + α·p`
    /// (the blended injection of Chen et al. 2017). Errors name `alpha` outside [0, 1].
    pub fn blend(shape: [usize; 3], pattern: PatternKind, alpha: f32) -> Result<Self, AttackError> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(AttackError::invalid_parameter(
                "alpha",
                format!("the blend weight must be in [0, 1], got {alpha}"),
            ));
        }
        check_pattern(pattern)?;
        let [_, height, width] = shape;
        Self::new(shape, vec![alpha; height * width], pattern.fill(shape))
    }

    /// The image shape `[C, H, W]` the trigger is for.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The mask, `H·W` values, row-major.
    pub fn mask(&self) -> &[f32] {
        &self.mask
    }

    /// The pattern, `C·H·W` values.
    pub fn pattern(&self) -> &[f32] {
        &self.pattern
    }

    /// `‖m‖₁`: Neural Cleanse's measure of how much of the image a trigger needs.
    pub fn mask_l1(&self) -> f64 {
        self.mask.iter().map(|&m| f64::from(m)).sum()
    }

    /// Stamp the trigger on one image (`C·H·W` values) in place: `x ← (1 − m)·x + m·p`.
    ///
    /// # Panics
    /// If `image` does not have `C·H·W` values; callers pass images of the trigger's shape.
    pub fn stamp(&self, image: &mut [f32]) {
        let plane = self.mask.len();
        assert_eq!(image.len(), self.pattern.len(), "image of the wrong shape");
        for (index, (value, &pattern)) in image.iter_mut().zip(&self.pattern).enumerate() {
            let mask = self.mask[index % plane];
            *value = (1.0 - mask) * *value + mask * pattern;
        }
    }

    /// Every image of `images` with the trigger stamped on, labels unchanged.
    pub fn stamp_all(&self, images: &ImageSet) -> Result<ImageSet, AttackError> {
        self.check_shape(images.shape())?;
        let mut pixels = images.pixels().to_vec();
        for image in pixels.chunks_mut(images.sample_len()) {
            self.stamp(image);
        }
        ImageSet::new(
            images.shape(),
            pixels,
            images.labels().to_vec(),
            images.num_classes(),
        )
    }

    /// An error unless the trigger is for images of `shape`.
    pub fn check_shape(&self, shape: [usize; 3]) -> Result<(), AttackError> {
        if shape == self.shape {
            Ok(())
        } else {
            Err(AttackError::ShapeMismatch {
                what: "trigger vs images",
                expected: self.shape.to_vec(),
                actual: shape.to_vec(),
            })
        }
    }

    /// Intersection over union of the pixel sets where each mask exceeds `threshold`:
    /// how well a recovered mask covers the planted one. `None` when both sets are empty.
    pub fn mask_iou(&self, other: &Trigger, threshold: f32) -> Option<f64> {
        if self.mask.len() != other.mask.len() {
            return None;
        }
        let (mut intersection, mut union) = (0usize, 0usize);
        for (&a, &b) in self.mask.iter().zip(&other.mask) {
            let (a, b) = (a > threshold, b > threshold);
            intersection += usize::from(a && b);
            union += usize::from(a || b);
        }
        (union > 0).then(|| intersection as f64 / union as f64)
    }
}

fn check_pattern(pattern: PatternKind) -> Result<(), AttackError> {
    match pattern {
        PatternKind::Solid(value) if !(0.0..=1.0).contains(&value) => {
            Err(AttackError::invalid_parameter(
                "value",
                format!("the patch value must be in [0, 1], got {value}"),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: [usize; 3] = [1, 8, 8];

    #[test]
    fn a_badnets_patch_sets_exactly_its_pixels() {
        let trigger = Trigger::patch(
            SHAPE,
            3,
            PatchPosition::Named(NamedPosition::BottomRight),
            PatternKind::Solid(1.0),
        )
        .unwrap();
        let mut image: Vec<f32> = (0..64).map(|i| i as f32 / 128.0).collect();
        let original = image.clone();
        trigger.stamp(&mut image);
        for row in 0..8 {
            for column in 0..8 {
                let index = row * 8 + column;
                if row >= 5 && column >= 5 {
                    assert_eq!(image[index], 1.0, "({row}, {column}) inside the patch");
                } else {
                    assert_eq!(image[index], original[index], "({row}, {column}) outside");
                }
            }
        }
        assert_eq!(trigger.mask_l1(), 9.0);
    }

    #[test]
    fn positions_place_the_patch_where_named() {
        let corner = |position| {
            let trigger = Trigger::patch(SHAPE, 2, position, PatternKind::Solid(0.5)).unwrap();
            trigger.mask().iter().position(|&m| m == 1.0).unwrap()
        };
        assert_eq!(corner(PatchPosition::Named(NamedPosition::TopLeft)), 0);
        assert_eq!(corner(PatchPosition::Named(NamedPosition::TopRight)), 6);
        assert_eq!(
            corner(PatchPosition::Named(NamedPosition::BottomLeft)),
            6 * 8
        );
        assert_eq!(
            corner(PatchPosition::Named(NamedPosition::BottomRight)),
            6 * 8 + 6
        );
        assert_eq!(
            corner(PatchPosition::Named(NamedPosition::Center)),
            3 * 8 + 3
        );
        assert_eq!(corner(PatchPosition::At([1, 4])), 8 + 4);
    }

    #[test]
    fn a_patch_that_does_not_fit_names_the_key() {
        let named = PatchPosition::Named(NamedPosition::TopLeft);
        let error = Trigger::patch(SHAPE, 9, named, PatternKind::Solid(1.0)).unwrap_err();
        assert!(error.to_string().contains("`size`"), "{error}");
        let error = Trigger::patch(SHAPE, 0, named, PatternKind::Solid(1.0)).unwrap_err();
        assert!(error.to_string().contains("`size`"), "{error}");
        let error = Trigger::patch(SHAPE, 3, PatchPosition::At([6, 0]), PatternKind::Solid(1.0))
            .unwrap_err();
        assert!(error.to_string().contains("`position`"), "{error}");
        let error = Trigger::patch(SHAPE, 3, named, PatternKind::Solid(2.0)).unwrap_err();
        assert!(error.to_string().contains("`value`"), "{error}");
        let error = Trigger::blend(SHAPE, PatternKind::Checkerboard, 1.5).unwrap_err();
        assert!(error.to_string().contains("`alpha`"), "{error}");
    }

    #[test]
    fn a_blend_mixes_every_pixel_with_weight_alpha() {
        let trigger = Trigger::blend([2, 2, 2], PatternKind::Checkerboard, 0.25).unwrap();
        let mut image = vec![0.5; 8];
        trigger.stamp(&mut image);
        // Checkerboard per channel: 1, 0 / 0, 1.
        let expected = [0.625, 0.375, 0.375, 0.625];
        assert_eq!(&image[..4], &expected);
        assert_eq!(&image[4..], &expected);
    }

    #[test]
    fn noise_patterns_are_seeded() {
        let a = PatternKind::Noise { seed: 1 }.fill(SHAPE);
        assert_eq!(a, PatternKind::Noise { seed: 1 }.fill(SHAPE));
        assert_ne!(a, PatternKind::Noise { seed: 2 }.fill(SHAPE));
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
    }

    #[test]
    fn mask_iou_counts_overlap_over_union() {
        let a =
            Trigger::patch(SHAPE, 2, PatchPosition::At([0, 0]), PatternKind::Solid(1.0)).unwrap();
        let b =
            Trigger::patch(SHAPE, 2, PatchPosition::At([0, 1]), PatternKind::Solid(1.0)).unwrap();
        // Overlap: column 1 of rows 0 and 1 (2 pixels); union 6 pixels.
        assert_eq!(a.mask_iou(&b, 0.5), Some(2.0 / 6.0));
        assert_eq!(a.mask_iou(&a, 0.5), Some(1.0));
        let empty = Trigger::new(SHAPE, vec![0.0; 64], vec![0.0; 64]).unwrap();
        assert_eq!(empty.mask_iou(&empty, 0.5), None);
    }
}
