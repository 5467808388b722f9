//! Exit codes, documented in the README.

use std::process::ExitCode;

/// What the process tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything asked for is done.
    Ok,
    /// 1: a run-time failure stopped the command (network, disk, state).
    Runtime,
    /// 2: the command line or a workflow file is wrong; nothing was done.
    Usage,
    /// 3: the command ran, but some days or tasks failed (listed on stderr).
    TasksFailed,
}

impl ExitStatus {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Runtime => 1,
            ExitStatus::Usage => 2,
            ExitStatus::TasksFailed => 3,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s.code())
    }
}
