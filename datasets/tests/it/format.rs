use gauntlet_datasets::{DatasetError, DatasetFormat};

#[derive(serde::Deserialize)]
struct Section {
    format: DatasetFormat,
}

#[test]
fn suite_files_spell_formats_in_snake_case() {
    for (text, want) in [
        ("idx", DatasetFormat::Idx),
        ("cifar10", DatasetFormat::Cifar10),
        ("cifar", DatasetFormat::Cifar10),
        ("image_folder", DatasetFormat::ImageFolder),
        ("npy", DatasetFormat::Npy),
    ] {
        let section: Section = toml::from_str(&format!("format = \"{text}\"")).unwrap();
        assert_eq!(section.format, want, "{text}");
        assert_eq!(text.parse::<DatasetFormat>().unwrap(), want);
    }
    assert!(toml::from_str::<Section>("format = \"ImageFolder\"").is_err());
    assert!(toml::from_str::<Section>("format = \"hdf5\"").is_err());
}

#[test]
fn display_serialize_and_parse_agree() {
    for format in DatasetFormat::ALL {
        let json = serde_json::to_string(&format).unwrap();
        assert_eq!(json, format!("\"{format}\""));
        assert_eq!(format.to_string().parse::<DatasetFormat>().unwrap(), format);
    }
    assert!(matches!(
        "hdf5".parse::<DatasetFormat>(),
        Err(DatasetError::UnknownFormat { .. })
    ));
}
