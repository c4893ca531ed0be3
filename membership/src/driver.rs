//! Driver placeholder.
