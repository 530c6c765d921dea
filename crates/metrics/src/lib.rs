//! # coordkit-metrics
//!
//! Placeholder: this primitive arrives in its own issue. It already depends on
//! [`coordkit_core`] so the workspace layout is final.
#![forbid(unsafe_code)]

pub use coordkit_core;
