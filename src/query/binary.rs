//! Binary operators with Prometheus 2's vector matching: one-to-one on the
//! labels `on (…)` names (or all but `ignoring (…)` and the name),
//! `group_left` / `group_right` for many-to-one, and the set operators.

use std::collections::HashMap;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::Eval;
use super::value::{drop_name, label, set_label, Labels, Sample, Series, Val, NAME};
use super::QueryError;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn of(s: &str) -> Result<Op, QueryError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => {
                return Err(QueryError::Unsupported(format!(
                    "operator {other} is not supported"
                )))
            }
        })
    }

    fn comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }

    /// `l op r`: the value, and whether a comparison keeps it.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }

    /// A histogram operand: `h * n`, `h / n`, `h + h`, `h - h`.
    fn apply_hist(self, l: &Sample, r: &Sample) -> Option<Sample> {
        match (self, l, r) {
            (Op::Mul, Sample::H(h), Sample::F(f)) | (Op::Mul, Sample::F(f), Sample::H(h)) => {
                Some(Sample::H(h.times(*f)))
            }
            (Op::Div, Sample::H(h), Sample::F(f)) => Some(Sample::H(h.times(1.0 / f))),
            (Op::Add, Sample::H(a), Sample::H(b)) => a.add(b).map(Sample::H),
            (Op::Sub, Sample::H(a), Sample::H(b)) => a.add(&b.times(-1.0)).map(Sample::H),
            _ => None,
        }
    }
}

/// One pair of samples: the result, or `None` to drop it.
fn combine(op: Op, bool_: bool, l: &Sample, r: &Sample, keep_left: bool) -> Option<Sample> {
    match (l, r) {
        (Sample::F(a), Sample::F(b)) => {
            let (v, keep) = op.apply(*a, *b);
            if op.comparison() {
                if bool_ {
                    return Some(Sample::F(if keep { 1.0 } else { 0.0 }));
                }
                if !keep {
                    return None;
                }
                // The vector's own value, whichever side it is on.
                return Some(Sample::F(if keep_left { *a } else { *b }));
            }
            Some(Sample::F(v))
        }
        _ => op.apply_hist(l, r),
    }
}

pub fn negate(v: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    Ok(v.into_iter()
        .map(|s| Series {
            labels: drop_name(&s.labels),
            points: s
                .points
                .into_iter()
                .map(|p| match p {
                    Some(Sample::F(x)) => Some(Sample::F(-x)),
                    Some(Sample::H(h)) => Some(Sample::H(h.times(-1.0))),
                    None => None,
                })
                .collect(),
        })
        .collect())
}

/// The matching signature of `l`.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => l
            .iter()
            .filter(|(k, _)| on.labels.iter().any(|x| x == k))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(ign)) => l
            .iter()
            .filter(|(k, _)| k != NAME && !ign.labels.iter().any(|x| x == k))
            .cloned()
            .collect(),
        None => drop_name(l),
    }
}

pub fn eval(ev: &Eval<'_>, b: &BinaryExpr) -> Result<Val, QueryError> {
    let op = Op::of(&b.op.to_string())?;
    let modifier = b.modifier.as_ref();
    let bool_ = modifier.is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs)?;
    let rhs = ev.eval(&b.rhs)?;
    let drop = !op.comparison() || bool_;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            if op.set() {
                return Err(QueryError::Parse(format!(
                    "{op:?} needs instant vectors on both sides"
                )));
            }
            if op.comparison() && !bool_ {
                return Err(QueryError::Parse(
                    "comparisons between numbers need `bool`, e.g. 1 > bool 0".into(),
                ));
            }
            Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(a, b)| {
                        let (v, keep) = op.apply(*a, *b);
                        if op.comparison() {
                            if keep {
                                1.0
                            } else {
                                0.0
                            }
                        } else {
                            v
                        }
                    })
                    .collect(),
            ))
        }
        (Val::Vector(v), Val::Scalar(s)) | (Val::Scalar(s), Val::Vector(v)) if op.set() => {
            let _ = (v, s);
            Err(QueryError::Parse(
                "and, or and unless need instant vectors on both sides".into(),
            ))
        }
        (Val::Vector(v), Val::Scalar(s)) => {
            Ok(Val::Vector(with_scalar(op, bool_, drop, v, &s, false)))
        }
        (Val::Scalar(s), Val::Vector(v)) => {
            Ok(Val::Vector(with_scalar(op, bool_, drop, v, &s, true)))
        }
        (Val::Vector(l), Val::Vector(r)) => {
            let matching = modifier.and_then(|m| m.matching.clone());
            let card = modifier
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            if op.set() {
                return Ok(Val::Vector(set_op(op, l, r, &matching, ev.grid.steps)));
            }
            vectors(op, bool_, drop, l, r, &matching, &card, ev.grid.steps).map(Val::Vector)
        }
        _ => Err(QueryError::Parse("strings cannot be operands".into())),
    }
}

fn with_scalar(
    op: Op,
    bool_: bool,
    drop: bool,
    v: Vec<Series>,
    s: &[f64],
    swap: bool,
) -> Vec<Series> {
    v.into_iter()
        .filter_map(|series| {
            let points: Vec<Option<Sample>> = series
                .points
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let p = p.as_ref()?;
                    let x = Sample::F(s[k]);
                    if swap {
                        combine(op, bool_, &x, p, false)
                    } else {
                        combine(op, bool_, p, &x, true)
                    }
                })
                .collect();
            points.iter().any(Option::is_some).then(|| Series {
                labels: if drop {
                    drop_name(&series.labels)
                } else {
                    series.labels
                },
                points,
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn vectors(
    op: Op,
    bool_: bool,
    drop: bool,
    l: Vec<Series>,
    r: Vec<Series>,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    steps: usize,
) -> Result<Vec<Series>, QueryError> {
    // group_right: the right side is the "many" side; computed swapped.
    let (many, one, swapped, include) = match card {
        VectorMatchCardinality::OneToMany(inc) => (r, l, true, inc.labels.clone()),
        VectorMatchCardinality::ManyToOne(inc) => (l, r, false, inc.labels.clone()),
        _ => (l, r, false, Vec::new()),
    };
    let grouped = !matches!(card, VectorMatchCardinality::OneToOne);
    let mut by_sig: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, s) in one.iter().enumerate() {
        by_sig
            .entry(signature(&s.labels, matching))
            .or_default()
            .push(i);
    }
    let mut out: HashMap<Labels, Vec<Option<Sample>>> = HashMap::new();
    let mut order: Vec<Labels> = Vec::new();
    let mut seen_many: HashMap<(Labels, usize), ()> = HashMap::new();
    for m in &many {
        let sig = signature(&m.labels, matching);
        let Some(candidates) = by_sig.get(&sig) else {
            continue;
        };
        for k in 0..steps {
            let Some(ms) = &m.points[k] else { continue };
            let mut here = candidates.iter().filter(|&&i| one[i].points[k].is_some());
            let Some(&oi) = here.next() else { continue };
            if here.next().is_some() {
                return Err(QueryError::Eval(format!(
                    "many-to-many matching not allowed: more than one series on the {} side match {}; add labels to on (…) or use ignoring (…)",
                    if swapped { "left" } else { "right" },
                    super::value::display(&sig)
                )));
            }
            if !grouped && seen_many.insert((sig.clone(), k), ()).is_some() {
                return Err(QueryError::Eval(format!(
                    "multiple matches for labels {}: many-to-one matching must be explicit (group_left / group_right)",
                    super::value::display(&sig)
                )));
            }
            let os = one[oi].points[k].as_ref().expect("filtered above");
            let (a, b) = if swapped { (os, ms) } else { (ms, os) };
            let Some(v) = combine(op, bool_, a, b, true) else {
                continue;
            };
            // The result's labels: the many side's, shaped by the matching.
            let mut labels = m.labels.clone();
            if drop {
                labels.retain(|(k, _)| k != NAME);
            }
            if !grouped {
                labels = match matching {
                    Some(LabelModifier::Include(on)) => labels
                        .into_iter()
                        .filter(|(k, _)| on.labels.iter().any(|x| x == k))
                        .collect(),
                    Some(LabelModifier::Exclude(ign)) => labels
                        .into_iter()
                        .filter(|(k, _)| !ign.labels.iter().any(|x| x == k))
                        .collect(),
                    None => labels,
                };
            }
            for name in &include {
                let value = label(&one[oi].labels, name).to_string();
                set_label(&mut labels, name, &value);
            }
            let row = out.entry(labels.clone()).or_insert_with(|| {
                order.push(labels.clone());
                vec![None; steps]
            });
            if row[k].is_some() {
                return Err(QueryError::Eval(format!(
                    "two results with the labels {} at one step; make the matching unique",
                    super::value::display(&labels)
                )));
            }
            row[k] = Some(v);
        }
    }
    Ok(order
        .into_iter()
        .map(|labels| {
            let points = out.remove(&labels).unwrap_or_default();
            Series { labels, points }
        })
        .collect())
}

fn set_op(
    op: Op,
    l: Vec<Series>,
    r: Vec<Series>,
    matching: &Option<LabelModifier>,
    steps: usize,
) -> Vec<Series> {
    let rsig: Vec<Labels> = r.iter().map(|s| signature(&s.labels, matching)).collect();
    let lsig: Vec<Labels> = l.iter().map(|s| signature(&s.labels, matching)).collect();
    let present = |side: &[Series], sigs: &[Labels], sig: &Labels, k: usize| {
        side.iter()
            .zip(sigs)
            .any(|(s, g)| g == sig && s.points[k].is_some())
    };
    let mut out = Vec::new();
    for (s, sig) in l.iter().zip(&lsig) {
        let points: Vec<Option<Sample>> = (0..steps)
            .map(|k| {
                let p = s.points[k].clone()?;
                let other = present(&r, &rsig, sig, k);
                match op {
                    Op::And if !other => None,
                    Op::Unless if other => None,
                    _ => Some(p),
                }
            })
            .collect();
        if points.iter().any(Option::is_some) {
            out.push(Series {
                labels: s.labels.clone(),
                points,
            });
        }
    }
    if op == Op::Or {
        for (s, sig) in r.iter().zip(&rsig) {
            let points: Vec<Option<Sample>> = (0..steps)
                .map(|k| {
                    let p = s.points[k].clone()?;
                    (!present(&l, &lsig, sig, k)).then_some(p)
                })
                .collect();
            if points.iter().any(Option::is_some) {
                out.push(Series {
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
    }
    out
}
