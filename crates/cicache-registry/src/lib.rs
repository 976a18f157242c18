//! cicache-registry
