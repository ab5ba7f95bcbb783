//! Weights for a spec'd network, detected by content: safetensors or a PyTorch checkpoint
//! (zip or legacy `torch.save`), never by the file's extension.

use candle_core::Device;

use crate::checkpoint;
use crate::spec::ModelSpec;
use crate::{ModelError, ModelFormat, Network};

/// What a weights file holds, by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    Safetensors,
    /// `torch.save` of a state dict (zip or legacy format).
    TorchCheckpoint,
}

impl WeightsFormat {
    /// Identifies `bytes`; `None` for anything else (ONNX, TorchScript, garbage).
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        if gauntlet_artifact::safetensors::looks_like(bytes) {
            Some(WeightsFormat::Safetensors)
        } else if checkpoint::looks_like(bytes) {
            Some(WeightsFormat::TorchCheckpoint)
        } else {
            None
        }
    }
}

impl Network {
    /// Builds the network of `spec` with weights that are either safetensors or a PyTorch
    /// checkpoint (detected by content). A checkpoint is scanned first and refused on any
    /// high finding; its state dict is then read by a data-only pickle machine and loaded
    /// with the same strict checks as safetensors. `name` is the file's name, for the
    /// scanner's findings.
    pub fn from_spec_and_weight_bytes(
        spec: &ModelSpec,
        bytes: &[u8],
        name: &str,
        device: &Device,
    ) -> Result<Self, ModelError> {
        match WeightsFormat::detect(bytes) {
            Some(WeightsFormat::TorchCheckpoint) => {
                let state = checkpoint::read_state_dict(bytes, name)?;
                let converted = checkpoint::to_safetensors(&state)?;
                Ok(Self::from_spec_and_safetensors(spec, &converted, device)?
                    .with_format(ModelFormat::TorchCheckpoint))
            }
            // Safetensors, or something unrecognised: the safetensors parser names the fault.
            _ => Self::from_spec_and_safetensors(spec, bytes, device),
        }
    }
}
