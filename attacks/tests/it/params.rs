//! Suite-file parameters, for every registry entry: unknown keys and bad values are errors that
//! name the key, and the documented parameter list is exactly what the attack accepts.

use gauntlet_attacks::{find_attack, AttackError, ATTACKS};

fn build_error(name: &str, text: &str) -> (String, String) {
    let table: toml::Table = toml::from_str(text).unwrap();
    match (find_attack(name).unwrap().build)(&table, 0.1) {
        Ok(_) => panic!("{name} accepted `{text}`"),
        Err(AttackError::InvalidParameter { key, message }) => (key, message),
        Err(other) => panic!("{name}: expected InvalidParameter, got {other:?}"),
    }
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    for entry in ATTACKS {
        let (key, message) = build_error(entry.name, "norm = \"l2\"\nstepz = 3");
        assert_eq!(key, "stepz", "{}", entry.name);
        assert!(
            message.contains("unknown field"),
            "{}: {message}",
            entry.name
        );
        // The message lists what is accepted.
        assert!(message.contains("`norm`"), "{}: {message}", entry.name);
    }
}

#[test]
fn wrong_types_and_values_name_the_key() {
    for entry in ATTACKS {
        assert_eq!(build_error(entry.name, "norm = \"l3\"").0, "norm");
        assert_eq!(build_error(entry.name, "loss = 1").0, "loss");
        assert_eq!(build_error(entry.name, "targeted = \"yes\"").0, "targeted");
        assert_eq!(
            build_error(entry.name, "targeted = true\ntarget = -1").0,
            "target"
        );
        assert_eq!(build_error(entry.name, "target = \"random\"").0, "target");
    }
    let (key, message) = build_error("pgd", "steps = 0");
    assert_eq!(
        (key.as_str(), message.as_str()),
        ("steps", "steps must be ≥ 1, got 0")
    );
}

/// The unknown-field message of serde lists every field of `Params`: compare it with the
/// documented parameters, both ways.
#[test]
fn documented_parameters_are_exactly_the_accepted_ones() {
    for entry in ATTACKS {
        let (_, message) = build_error(entry.name, "no_such_key = 1");
        let listed = message
            .split_once("expected")
            .map(|(_, list)| list)
            .unwrap_or_else(|| panic!("{}: {message}", entry.name));
        let mut accepted: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        let mut documented: Vec<&str> = entry.parameters.iter().map(|p| p.name).collect();
        accepted.sort_unstable();
        documented.sort_unstable();
        assert_eq!(
            accepted, documented,
            "{}: Params fields vs ParameterDoc list",
            entry.name
        );
    }
}

/// Every documented default that is a TOML value parses and builds.
#[test]
fn documented_defaults_are_valid_values() {
    for entry in ATTACKS {
        let mut table = toml::Table::new();
        for parameter in entry.parameters {
            if let Ok(value) = toml::from_str::<toml::Table>(&format!("v = {}", parameter.default))
            {
                table.insert(parameter.name.to_owned(), value["v"].clone());
            }
        }
        // `target` only makes sense with `targeted = true`.
        if table.contains_key("target") {
            table.insert("targeted".to_owned(), toml::Value::Boolean(true));
        }
        assert!(
            (entry.build)(&table, 0.1).is_ok(),
            "{}: documented defaults {table:?} do not build",
            entry.name
        );
    }
}

#[test]
fn registry_names_are_unique_and_findable() {
    for (i, entry) in ATTACKS.iter().enumerate() {
        assert!(
            ATTACKS[..i].iter().all(|other| other.name != entry.name),
            "duplicate {}",
            entry.name
        );
        assert_eq!(find_attack(entry.name).unwrap().name, entry.name);
        assert!(!entry.summary.is_empty() && !entry.reference.is_empty());
    }
    assert!(find_attack("no-such-attack").is_none());
}
