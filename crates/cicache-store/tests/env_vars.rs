//! Issue 21, items 9 and 2: empty variables mean unset, and a restore never replaces the state
//! dir. Its own test binary: it changes the process environment.

use std::sync::Arc;

use cicache_store::backend::dir::DirBackend;
use cicache_store::{NoProgress, RestoreRequest, SaveRequest, Store};

#[test]
fn empty_variables_mean_unset_and_the_state_dir_is_never_a_target() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // SAFETY: this test binary has one test; nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var("HOME", &home);
        std::env::set_var("XDG_CACHE_HOME", "");
        std::env::set_var("CICACHE_STATE_DIR", "");
    }
    let state = cicache_store::state::state_dir();
    assert_eq!(state, home.join(".cache/cicache-state"));
    let store_dir = cicache_store::backend::default_store_dir();
    assert!(store_dir.is_absolute(), "{}", store_dir.display());
    assert!(
        store_dir == std::path::Path::new("/var/cache/cicache")
            || store_dir == home.join(".cache/cicache"),
        "{}",
        store_dir.display()
    );
    // A relative XDG_CACHE_HOME is ignored too (the XDG spec says so).
    unsafe { std::env::set_var("XDG_CACHE_HOME", "rel") };
    assert_eq!(cicache_store::state::state_dir(), state);
    unsafe { std::env::set_var("XDG_CACHE_HOME", tmp.path().join("xdg")) };
    assert_eq!(
        cicache_store::state::state_dir(),
        tmp.path().join("xdg/cicache-state")
    );

    // The state dir inside the target: refused.
    let ws = tmp.path().join("ws");
    unsafe { std::env::set_var("CICACHE_STATE_DIR", ws.join("state")) };
    let store = Store::new(Arc::new(
        DirBackend::open(tmp.path().join("store")).unwrap(),
    ));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "1").unwrap();
    store
        .save(
            &SaveRequest {
                scope: "main",
                key: "k",
                path: &src,
                update: false,
                if_changed: false,
                excludes: &[],
            },
            &NoProgress,
        )
        .unwrap();
    let err = store
        .restore(
            &RestoreRequest {
                scope: "main",
                fallback_scopes: &[],
                key: "k",
                restore_keys: &[],
                path: &ws,
                lookup_only: false,
            },
            &NoProgress,
        )
        .expect_err("the state dir would be replaced");
    assert!(err.to_string().contains("the state dir"), "{err}");
}
