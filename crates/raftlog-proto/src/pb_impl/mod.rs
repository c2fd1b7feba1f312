//! Conversions between generated protobuf types and domain types, one file per type.

mod impl_error_reason;
mod impl_record;

pub use impl_error_reason::RetryClass;
pub use impl_record::stored_record;
