//! cicache-docker
