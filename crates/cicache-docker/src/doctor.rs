//! `cicache doctor`: checks of docker, BuildKit, the Dockerfile, the store and the registry.
