//! reconcile (under construction).
