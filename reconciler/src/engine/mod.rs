//! The pieces a session (`ops`) is made of, one job per module: loading and checking a
//! repository (`load`), state and its lock (`lock`), the run's secrets (`run_secrets`), plan
//! options, saved plans and running a plan (`run`).

mod load;
mod lock;
mod run;
mod run_secrets;

pub use load::*;
pub use lock::*;
pub use run::*;
pub use run_secrets::*;
