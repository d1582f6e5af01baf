//! daemon (under construction).
