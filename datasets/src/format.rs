//! [`DatasetFormat`]: the `format` key of a suite file's `[dataset]` table.

use std::fmt;
use std::str::FromStr;

use crate::DatasetError;

/// Which loader reads a dataset. Serialised in snake_case (`idx`, `cifar10`, `image_folder`,
/// `npy`); `cifar` is accepted as an alias of `cifar10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// IDX images + labels files ([`crate::load_idx`]).
    Idx,
    /// CIFAR-10 binary batches ([`crate::load_cifar10_path`]).
    #[serde(alias = "cifar")]
    Cifar10,
    /// One subfolder per class of PNG/JPEG images ([`crate::load_image_folder`]).
    ImageFolder,
    /// NumPy images + labels files ([`crate::load_npy`]).
    Npy,
}

impl DatasetFormat {
    /// Every format, in documentation order.
    pub const ALL: [DatasetFormat; 4] = [
        DatasetFormat::Idx,
        DatasetFormat::Cifar10,
        DatasetFormat::ImageFolder,
        DatasetFormat::Npy,
    ];

    /// The snake_case name used in suite files.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Idx => "idx",
            DatasetFormat::Cifar10 => "cifar10",
            DatasetFormat::ImageFolder => "image_folder",
            DatasetFormat::Npy => "npy",
        }
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetFormat {
    type Err = DatasetError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cifar" => Ok(DatasetFormat::Cifar10),
            _ => DatasetFormat::ALL
                .into_iter()
                .find(|f| f.as_str() == name)
                .ok_or_else(|| DatasetError::UnknownFormat {
                    name: name.to_string(),
                }),
        }
    }
}
