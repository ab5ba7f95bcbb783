//! Sign a model folder in the OpenSSF model-signing v1.0 format (key mode).
//!
//! ```text
//! cargo run -p gauntlet-artifact --example sign -- MODEL_DIR PRIVATE_KEY.pem SIGNATURE_PATH
//! ```
//!
//! The result verifies with `model_signing verify key MODEL_DIR --signature SIGNATURE_PATH
//! --public_key PUBLIC_KEY.pem`. Used by tests/interop/model_signing_interop.sh.

use std::path::PathBuf;
use std::process::ExitCode;

use gauntlet_artifact::signing::{sign_folder, SignOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, key, signature] = args.as_slice() else {
        eprintln!("usage: sign MODEL_DIR PRIVATE_KEY.pem SIGNATURE_PATH");
        return ExitCode::from(2);
    };
    let key_pem = match fs_err::read_to_string(key) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match sign_folder(
        &PathBuf::from(dir),
        &key_pem,
        &PathBuf::from(signature),
        &SignOptions::default(),
    ) {
        Ok(signed) => {
            println!(
                "signed {} files of {dir} with {} key {} -> {signature}",
                signed.file_count, signed.algorithm, signed.signer_fingerprint
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
