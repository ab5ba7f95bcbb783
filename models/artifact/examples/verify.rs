//! Verify a model folder against an OpenSSF model-signing v1.0 signature (key mode).
//!
//! ```text
//! cargo run -p gauntlet-artifact --example verify -- MODEL_DIR SIGNATURE_PATH PUBLIC_KEY.pem
//! ```
//!
//! Prints the verdict as JSON; exit 0 valid, 1 invalid (with every reason), 2 unreadable input.
//! Used by tests/interop/model_signing_interop.sh.

use std::path::PathBuf;
use std::process::ExitCode;

use gauntlet_artifact::signing::verify_folder;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, signature, key] = args.as_slice() else {
        eprintln!("usage: verify MODEL_DIR SIGNATURE_PATH PUBLIC_KEY.pem");
        return ExitCode::from(2);
    };
    let key_pem = match fs_err::read_to_string(key) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match verify_folder(&PathBuf::from(dir), &PathBuf::from(signature), &key_pem) {
        Ok(verdict) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&verdict).unwrap_or_default()
            );
            for problem in &verdict.problems {
                eprintln!("problem: {problem}");
            }
            if verdict.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
