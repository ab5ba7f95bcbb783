use gauntlet_datasets::{load_image_folder, Dataset, DatasetError};

use crate::{all_inputs, all_labels, fixture, names};

/// `make_fixtures.py`'s grayscale image k: 5 wide x 3 high, pixel(x, y) = 50k + 5y + x.
fn gray(k: u32) -> Vec<f32> {
    (0..3)
        .flat_map(|y| (0..5).map(move |x| (50 * k + 5 * y + x) as f32 / 255.0))
        .collect()
}

#[test]
fn grayscale_folder_gives_one_channel_and_sorted_classes() {
    let ds = load_image_folder(&fixture("image-folder/ok-gray")).unwrap();
    assert_eq!(ds.class_names(), names(&["ant", "bee"]).as_slice());
    assert_eq!(ds.sample_shape(), &[1, 3, 5]);
    assert_eq!(all_labels(&ds), vec![0, 0, 1]);
    let expected: Vec<f32> = [0, 1, 2].into_iter().flat_map(gray).collect();
    assert_eq!(all_inputs(&ds), expected);
}

#[test]
fn one_color_image_makes_every_image_rgb() {
    let ds = load_image_folder(&fixture("image-folder/ok-mixed")).unwrap();
    assert_eq!(ds.class_names(), names(&["cat", "dog"]).as_slice());
    assert_eq!(ds.sample_shape(), &[3, 3, 5]);
    // Sorted files: cat/gray.png, dog/flat.jpg, dog/rgb.png.
    assert_eq!(all_labels(&ds), vec![0, 1, 1]);
    let inputs = all_inputs(&ds);
    let plane = 15;
    // Gray image expanded: R = G = B = gray(3).
    let (gray_sample, rest) = inputs.split_at(3 * plane);
    for channel in gray_sample.chunks(plane) {
        assert_eq!(channel, gray(3).as_slice());
    }
    // Flat JPEG (200, 100, 50): lossy, so within a few levels.
    let (jpeg, rgb) = rest.split_at(3 * plane);
    for (channel, want) in jpeg.chunks(plane).zip([200.0f32, 100.0, 50.0]) {
        for &v in channel {
            assert!((v * 255.0 - want).abs() <= 3.0, "{v} vs {want}");
        }
    }
    // RGB PNG, planar: R = 60x, G = 100y, B = 7.
    let mut expected = Vec::new();
    for channel in 0..3 {
        for y in 0..3 {
            for x in 0..5 {
                let v = [60 * x, 100 * y, 7][channel];
                expected.push(v as f32 / 255.0);
            }
        }
    }
    assert_eq!(rgb, expected.as_slice());
}

#[test]
fn mixed_sizes_name_the_offending_file() {
    let err = load_image_folder(&fixture("image-folder/mixed-sizes")).unwrap_err();
    match &err {
        DatasetError::ImageSizeMismatch {
            path,
            width,
            height,
            first,
            expected_width,
            expected_height,
        } => {
            assert!(path.ends_with("b/odd.png"), "{path:?}");
            assert!(first.ends_with("a/first.png"), "{first:?}");
            assert_eq!((*width, *height), (4, 3));
            assert_eq!((*expected_width, *expected_height), (5, 3));
        }
        other => panic!("expected ImageSizeMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("odd.png"), "{err}");
}

#[test]
fn layout_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Only a file at the root: no class folders.
    std::fs::write(dir.path().join("README"), "not a class").unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(err, DatasetError::NoClassFolders { .. }),
        "{err:?}"
    );

    // An empty class folder (a hidden file does not count).
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join(".DS_Store"), "x").unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::EmptyClassFolder { path } if path == &empty),
        "{err:?}"
    );

    // A file that is not an image is named, not skipped.
    let notes = empty.join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::ImageDecode { path, .. } if path == &notes),
        "{err:?}"
    );
}

#[test]
fn nested_files_and_hidden_entries() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("only");
    std::fs::create_dir_all(class.join("deeper")).unwrap();
    std::fs::create_dir_all(dir.path().join(".hidden-class")).unwrap();
    std::fs::copy(
        fixture("image-folder/ok-gray/ant/a0.png"),
        class.join("deeper/x.png"),
    )
    .unwrap();
    std::fs::copy(
        fixture("image-folder/ok-gray/bee/b0.png"),
        class.join("a.png"),
    )
    .unwrap();
    let ds = load_image_folder(dir.path()).unwrap();
    assert_eq!(ds.class_names(), names(&["only"]).as_slice());
    // Sorted: a.png before deeper/.
    let expected: Vec<f32> = [2, 0].into_iter().flat_map(gray).collect();
    assert_eq!(all_inputs(&ds), expected);
}
