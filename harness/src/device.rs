//! `--device cpu|cuda[:N]`.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// Where tensors live, as written on the command line or in a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

/// Parse `cpu`, `cuda` or `cuda:N` without touching any hardware.
pub fn parse_device(text: &str) -> Result<DeviceChoice> {
    match text {
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(0)),
        _ => match text.strip_prefix("cuda:") {
            Some(ordinal) => Ok(DeviceChoice::Cuda(ordinal.parse().with_context(|| {
                format!("device `{text}`: `{ordinal}` is not a GPU ordinal")
            })?)),
            None => bail!("unknown device `{text}`; expected `cpu`, `cuda` or `cuda:N`"),
        },
    }
}

/// Open the device, with a clear error where this build or machine has no CUDA.
pub fn open_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(ordinal) => {
            if !cfg!(feature = "cuda") {
                bail!(
                    "device `cuda:{ordinal}` requested, but this gauntlet was built without CUDA \
                     support; rebuild with `cargo build --release --features cuda`"
                );
            }
            Device::new_cuda(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))
        }
    }
}

/// The device's name in reports.
pub fn device_name(choice: DeviceChoice) -> String {
    match choice {
        DeviceChoice::Cpu => "cpu".to_string(),
        DeviceChoice::Cuda(ordinal) => format!("cuda:{ordinal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_spellings() {
        assert_eq!(parse_device("cpu").unwrap(), DeviceChoice::Cpu);
        assert_eq!(parse_device("cuda").unwrap(), DeviceChoice::Cuda(0));
        assert_eq!(parse_device("cuda:3").unwrap(), DeviceChoice::Cuda(3));
        assert!(parse_device("cuda:x").is_err());
        assert!(parse_device("tpu").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = open_device(DeviceChoice::Cuda(0)).unwrap_err();
        assert!(format!("{err:#}").contains("--features cuda"));
    }
}
