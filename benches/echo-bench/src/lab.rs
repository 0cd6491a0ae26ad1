//! The lab (placeholder while the generator settles).
use clap::Args;

/// Options of `echo-bench lab`.
#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    /// Quick mode.
    #[arg(long)]
    pub quick: bool,
}

/// Runs the lab.
pub fn run(_args: &LabArgs) -> Result<bool, String> {
    Ok(true)
}
