//! Compose files (the Compose specification) read into edge jobs: which
//! files and variables make the project (`load`), interpolation
//! (`interp`), the keys edge takes or refuses (`keys`), and the job the
//! project becomes (`convert`). Reads the project's files; no network, no
//! clock.

pub mod convert;
pub mod error;
pub mod interp;
pub mod keys;
pub mod load;
pub mod locate;

pub use convert::{Conversion, DataObject, convert, written_objects};
pub use error::{ComposeError, Warning, Where};
pub use load::{Options, Project};
