//! The ECR lifecycle policy cicache recommends for a cache repository.
//!
//! ECR evaluates rules by priority; an image matched by a rule cannot be expired by a rule of
//! lower priority. So rule 1 claims the `cache` tag (keeping the one image that carries it),
//! rule 2 expires `cache-*` tags pushed more than `scope_days` ago, and rule 3 expires
//! untagged images pushed more than `untagged_days` ago. `base-*` and all other tags match no
//! rule and stay.
//!
//! ECR expires *images*: an image tagged both `cache-x` and an application tag such as
//! `v1.2` is expired by rule 2 with all its tags. Keep the cache tags in a repository of
//! their own (`cicache registry ensure --cache-repo`) when application tags live beside them.

use serde_json::{Value, json};

use crate::tags::{DEFAULT_CACHE_TAG, SCOPE_CACHE_PREFIX};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSpec {
    /// Untagged images are expired this many days after their push.
    pub untagged_days: u32,
    /// `cache-<scope>` tags are expired this many days after their push.
    pub scope_days: u32,
}

impl Default for LifecycleSpec {
    fn default() -> Self {
        LifecycleSpec {
            untagged_days: 7,
            scope_days: 14,
        }
    }
}

/// The policy document, as `PutLifecyclePolicy` takes it.
pub fn policy(spec: LifecycleSpec) -> Value {
    json!({
        "rules": [
            {
                "rulePriority": 1,
                "description": "cicache: keep the default branch cache tag `cache`",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": [DEFAULT_CACHE_TAG],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1
                },
                "action": { "type": "expire" }
            },
            {
                "rulePriority": 2,
                "description": format!(
                    "cicache: expire branch cache tags {SCOPE_CACHE_PREFIX}* {} days after their push",
                    spec.scope_days
                ),
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": [format!("{SCOPE_CACHE_PREFIX}*")],
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": spec.scope_days
                },
                "action": { "type": "expire" }
            },
            {
                "rulePriority": 3,
                "description": format!(
                    "cicache: expire untagged images {} days after their push",
                    spec.untagged_days
                ),
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": spec.untagged_days
                },
                "action": { "type": "expire" }
            }
        ]
    })
}

/// Checks the numbers ECR accepts (countNumber >= 1).
pub fn validate(spec: LifecycleSpec) -> Result<(), String> {
    if spec.untagged_days == 0 {
        return Err("--untagged-days must be at least 1 (ECR counts whole days)".into());
    }
    if spec.scope_days == 0 {
        return Err("--scope-days must be at least 1 (ECR counts whole days)".into());
    }
    Ok(())
}

/// The same policy, whatever key order or whitespace the text uses.
pub fn same_policy(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_has_the_three_rules() {
        let p = policy(LifecycleSpec {
            untagged_days: 3,
            scope_days: 21,
        });
        let rules = p["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        let prios: Vec<u64> = rules
            .iter()
            .map(|r| r["rulePriority"].as_u64().unwrap())
            .collect();
        assert_eq!(prios, vec![1, 2, 3]);
        assert_eq!(rules[0]["selection"]["tagPatternList"][0], "cache");
        assert_eq!(rules[1]["selection"]["tagPatternList"][0], "cache-*");
        assert_eq!(rules[1]["selection"]["countNumber"], 21);
        assert_eq!(rules[2]["selection"]["tagStatus"], "untagged");
        assert_eq!(rules[2]["selection"]["countNumber"], 3);
        for r in rules {
            assert_eq!(r["action"]["type"], "expire");
        }
    }

    #[test]
    fn zero_days_are_refused() {
        assert!(
            validate(LifecycleSpec {
                untagged_days: 0,
                scope_days: 1
            })
            .is_err()
        );
        assert!(
            validate(LifecycleSpec {
                untagged_days: 1,
                scope_days: 0
            })
            .is_err()
        );
        assert!(validate(LifecycleSpec::default()).is_ok());
    }

    #[test]
    fn compares_policies_by_meaning() {
        let a = serde_json::to_string(&policy(LifecycleSpec::default())).unwrap();
        let b = serde_json::to_string_pretty(&policy(LifecycleSpec::default())).unwrap();
        assert!(same_policy(&a, &b));
        let c = serde_json::to_string(&policy(LifecycleSpec {
            untagged_days: 1,
            scope_days: 2,
        }))
        .unwrap();
        assert!(!same_policy(&a, &c));
    }
}
