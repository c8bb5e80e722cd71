//! Subscription routing (daprd `pkg/runtime/subscription` + `pkg/expr`): a subscription's
//! `routes.rules` (CEL `match` + `path`), then `routes.default` (or the legacy `route`) as a
//! catch-all, compiled once into an ordered rule list. The first rule whose expression is true
//! gives the app path; no match means the message is acked and dropped.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Program, Value};

/// A rule as written in a Subscription or a `/dapr/subscribe` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// CEL over `event`; empty means "always".
    pub match_expr: String,
    pub path: String,
}

/// Why a subscription's routes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The `match` expression of rule `rule` (0-based) does not parse.
    #[error("routes.rules[{rule}].match: invalid CEL expression `{expr}`: {reason}")]
    InvalidExpression {
        rule: usize,
        expr: String,
        reason: String,
    },
    /// A rule with an empty path: the app could not be called.
    #[error("routes.rules[{rule}].path: a routing rule needs a non-empty path")]
    EmptyPath { rule: usize },
    /// The expression ran but failed (e.g. a missing field without `has()`) or did not give a
    /// bool. daprd treats this as a processing error, so the message is redelivered.
    #[error("evaluating `{expr}`: {reason}")]
    Evaluation { expr: String, reason: String },
}

/// One compiled rule. `program` is `None` for the catch-all.
struct Rule {
    expr: String,
    program: Option<Arc<Program>>,
    path: String,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("match", &self.expr)
            .field("path", &self.path)
            .finish()
    }
}

/// The ordered rule list of one subscription.
#[derive(Debug, Default)]
pub struct Routes {
    rules: Vec<Rule>,
}

impl Routes {
    /// Compiles `rules` in order, then `default` (or `legacy_route` when `default` is empty) as
    /// the catch-all. An empty result is allowed here; callers decide (daprd drops such a
    /// subscription with a warning).
    pub fn compile(
        rules: &[RuleSpec],
        default: Option<&str>,
        legacy_route: Option<&str>,
    ) -> Result<Self, RoutingError> {
        let mut out = Self::compile_rules(rules, false)?;
        let catch_all = default
            .filter(|d| !d.is_empty())
            .or(legacy_route.filter(|r| !r.is_empty()));
        if let Some(path) = catch_all {
            out.rules.push(Rule {
                expr: String::new(),
                program: None,
                path: path.to_owned(),
            });
        }
        Ok(out)
    }

    /// A gRPC app's routes (daprd's `ListTopicSubscriptions` handling): the rules, then
    /// `default` as the catch-all even when empty. The app tells events apart by
    /// `TopicEventRequest.path`, where an empty path is a valid answer.
    pub fn compile_for_grpc_app(rules: &[RuleSpec], default: &str) -> Result<Self, RoutingError> {
        let mut out = Self::compile_rules(rules, true)?;
        out.rules.push(Rule {
            expr: String::new(),
            program: None,
            path: default.to_owned(),
        });
        Ok(out)
    }

    fn compile_rules(rules: &[RuleSpec], allow_empty_paths: bool) -> Result<Self, RoutingError> {
        let mut out = Vec::with_capacity(rules.len() + 1);
        for (i, spec) in rules.iter().enumerate() {
            if spec.path.is_empty() && !allow_empty_paths {
                return Err(RoutingError::EmptyPath { rule: i });
            }
            let expr = spec.match_expr.trim();
            let program = if expr.is_empty() {
                None
            } else {
                Some(Arc::new(compile_expr(expr).map_err(|reason| {
                    RoutingError::InvalidExpression {
                        rule: i,
                        expr: expr.to_owned(),
                        reason,
                    }
                })?))
            };
            out.push(Rule {
                expr: expr.to_owned(),
                program,
                path: spec.path.clone(),
            });
        }
        Ok(Self { rules: out })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The paths of every rule, in order (for logs and the metadata API).
    /// The rules as written, `(match, path)`, in evaluation order (the catch-all has no match).
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules
            .iter()
            .map(|r| (r.expr.as_str(), r.path.as_str()))
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.path.as_str())
    }

    /// The path of the first rule that matches `event` (the CloudEvent as JSON), or `None`.
    pub fn route(&self, event: &serde_json::Value) -> Result<Option<&str>, RoutingError> {
        // Converted lazily: a subscription with only a catch-all never pays for it.
        let mut bound: Option<Value> = None;
        for rule in &self.rules {
            let Some(program) = &rule.program else {
                return Ok(Some(&rule.path));
            };
            let value = bound.get_or_insert_with(|| json_to_cel(event)).clone();
            let mut ctx = Context::default();
            ctx.add_variable_from_value("event", value);
            let err = |reason: String| RoutingError::Evaluation {
                expr: rule.expr.clone(),
                reason,
            };
            match program.execute(&ctx) {
                Ok(Value::Bool(true)) => return Ok(Some(&rule.path)),
                Ok(Value::Bool(false)) => {}
                Ok(other) => {
                    return Err(err(format!(
                        "the expression must give a bool, it gave {other:?}"
                    )))
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Ok(None)
    }
}

/// Parses a `match` expression. Only the standard environment is used, so `has()`,
/// `startsWith`, `endsWith`, `contains`, `size`, comparisons and boolean logic are available,
/// as in daprd's CEL environment.
fn compile_expr(expr: &str) -> Result<Program, String> {
    // The parser reports errors through its own type; its text names position and cause.
    Program::compile(expr).map_err(|e| e.to_string().trim().to_owned())
}

/// The CloudEvent as CEL sees it. Whole JSON numbers become `int` (or `uint` past i64) so
/// `event.data.amount == 100` holds; fractions become `double`.
fn json_to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::UInt(u),
            (None, None, Some(f)) => Value::Float(f),
            (None, None, None) => Value::Null,
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(map) => {
            let map: HashMap<Key, Value> = map
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests;
