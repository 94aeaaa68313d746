//! Value types built once at the edge with their checks ("parse, don't validate"), the
//! records the repository ports store, and the creator's view of a record.

mod keys;
mod records;
mod values;
mod view;

pub use keys::*;
pub use records::*;
pub use values::*;
pub use view::*;
