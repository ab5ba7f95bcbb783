//! Better messages for spec syntax errors inside `[[layers]]`.
//!
//! A layer is an internally tagged enum (`type = "conv2d"`), which serde reads through a
//! buffer: its errors lose the key (`invalid type: sequence, expected usize`) and toml points
//! at the `[[layers]]` line. When a spec fails to parse, each layer is parsed again on its own;
//! for the first one that fails, the key at fault is found by removing keys one at a time (the
//! error changes to `missing field` or goes away exactly when the bad key is removed), and the
//! message names the layer's path, its type and the key.

use serde::Deserialize;

use super::LayerSpec;

/// `Some(message)` naming the first failing layer and key, if the spec's layers are at fault.
pub(crate) fn layer_error(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let layers = table.get("layers")?.as_array()?;
    first_failure(layers, "layers")
}

fn first_failure(layers: &[toml::Value], path: &str) -> Option<String> {
    for (index, layer) in layers.iter().enumerate() {
        let here = format!("{path}[{index}]");
        let table = layer.as_table()?;
        let kind = table
            .get("type")
            .and_then(toml::Value::as_str)
            .unwrap_or("?")
            .to_string();
        for nested in ["body", "shortcut"] {
            if let Some(inner) = table.get(nested).and_then(toml::Value::as_array) {
                if let Some(found) = first_failure(inner, &format!("{here}.{nested}")) {
                    return Some(found);
                }
            }
        }
        let Err(error) = LayerSpec::deserialize(layer.clone()) else {
            continue;
        };
        let error = error.message().trim().to_string();
        let culprit = table
            .keys()
            .filter(|key| !matches!(key.as_str(), "type" | "body" | "shortcut"))
            .find(|key| {
                let mut without = table.clone();
                without.remove(key.as_str());
                match LayerSpec::deserialize(toml::Value::Table(without)) {
                    Ok(_) => true,
                    Err(other) => other.message().contains(&format!("missing field `{key}`")),
                }
            });
        return Some(match culprit {
            Some(key) => format!("{here} (type `{kind}`), key `{key}`: {error}"),
            None => format!("{here} (type `{kind}`): {error}"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_layer_and_the_key() {
        let text = "architecture = \"sequential\"\ninput_shape = [1, 8, 8]\nnum_classes = 2\n\
                    [[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"conv2d\"\nin_channels = 1\n\
                    out_channels = 2\nkernel_size = 3\nstride = [1, 2]\n";
        let message = layer_error(text).unwrap();
        assert!(
            message.starts_with("layers[1] (type `conv2d`), key `stride`"),
            "{message}"
        );
        assert!(message.contains("per-dimension"), "{message}");
        let text = text.replace("stride = [1, 2]", "in_features = 3");
        let message = layer_error(&text).unwrap();
        assert!(message.contains("unknown field `in_features`"), "{message}");
    }

    #[test]
    fn nested_layers_are_found() {
        let text = "architecture = \"sequential\"\ninput_shape = [1, 8, 8]\nnum_classes = 2\n\
                    [[layers]]\ntype = \"residual\"\n[[layers.body]]\ntype = \"linear\"\n\
                    in_features = [3]\nout_features = 2\n";
        let message = layer_error(text).unwrap();
        assert!(
            message.starts_with("layers[0].body[0] (type `linear`), key `in_features`"),
            "{message}"
        );
    }
}
