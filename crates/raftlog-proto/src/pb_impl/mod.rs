//! Conversions between generated protobuf types and domain types, one file per type.

mod impl_record;

pub use impl_record::stored_record;
