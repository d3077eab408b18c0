//! The cost budget of card front matter, checked on the YAML event stream before any value
//! is built: nesting depth, the number of values and the bytes of text the document expands
//! to, each alias counted as the whole subtree it repeats. Walking the events keeps memory
//! flat and stops at the first event over budget, so a hostile card costs at most its
//! budget, whatever its shape.

use saphyr_parser::{Event, Parser};
use std::collections::HashMap;

/// The deepest nesting accepted; real cards (`model-index`) nest about eight levels.
pub const MAX_DEPTH: usize = 64;
/// The most values (scalars, sequences and mappings, keys included) a card may expand to.
/// Parsing cost grows with values, not bytes: at this many, walking the events and then
/// building values takes about 30 ms in a release build; large real dataset cards have a
/// few thousand.
pub const MAX_VALUES: u64 = 20_000;
/// The most bytes of scalar text a card may expand to.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;

/// Why front matter is over budget or not YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("expands to more than {MAX_VALUES} values (aliases count as what they repeat)")]
    TooManyValues,
    #[error(
        "expands to more than {MAX_TEXT_BYTES} bytes of text (aliases count as what they repeat)"
    )]
    TooMuchText,
    #[error("{0}")]
    Syntax(String),
}

/// The size of what has been read, or of an anchored subtree.
#[derive(Clone, Copy, Default)]
struct Size {
    values: u64,
    text: u64,
}

/// Running totals against the budget.
#[derive(Default)]
struct Totals(Size);

impl Totals {
    fn add(&mut self, size: Size) -> Result<(), BudgetError> {
        self.0.values = self.0.values.saturating_add(size.values);
        self.0.text = self.0.text.saturating_add(size.text);
        if self.0.values > MAX_VALUES {
            return Err(BudgetError::TooManyValues);
        }
        if self.0.text > MAX_TEXT_BYTES {
            return Err(BudgetError::TooMuchText);
        }
        Ok(())
    }
}

/// Checks `yaml` against the budget; `Ok` means serde_norway may build it.
pub fn check(yaml: &str) -> Result<(), BudgetError> {
    let mut totals = Totals::default();
    // Open collections: their anchor id (0 for none) and the totals when they opened.
    let mut open: Vec<(usize, Size)> = Vec::new();
    let mut anchors: HashMap<usize, Size> = HashMap::new();
    for event in Parser::new_from_str(yaml) {
        let (event, _span) = event.map_err(|e| BudgetError::Syntax(e.to_string()))?;
        match event {
            Event::Scalar(text, _, anchor, _) => {
                let size = Size {
                    values: 1,
                    text: text.len() as u64,
                };
                totals.add(size)?;
                if anchor != 0 {
                    anchors.insert(anchor, size);
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let before = totals.0;
                totals.add(Size { values: 1, text: 0 })?;
                open.push((anchor, before));
                if open.len() > MAX_DEPTH {
                    return Err(BudgetError::TooDeep);
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, before)) = open.pop()
                    && anchor != 0
                {
                    anchors.insert(
                        anchor,
                        Size {
                            values: totals.0.values - before.values,
                            text: totals.0.text - before.text,
                        },
                    );
                }
            }
            // An alias of a collection still open (a cycle) is not known yet: it counts as
            // one value here and the YAML loader refuses the cycle itself.
            Event::Alias(anchor) => totals.add(
                anchors
                    .get(&anchor)
                    .copied()
                    .unwrap_or(Size { values: 1, text: 0 }),
            )?,
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Budgets are checked in a debug build with a generous ceiling; real timings are in
    /// docs/fuzzing.md.
    const CEILING: Duration = Duration::from_secs(2);

    fn timed(yaml: &str) -> Result<(), BudgetError> {
        let start = Instant::now();
        let result = check(yaml);
        assert!(start.elapsed() < CEILING, "took {:?}", start.elapsed());
        result
    }

    #[test]
    fn ordinary_cards_and_a_few_aliases_pass() {
        assert_eq!(
            timed("license: mit\ntags: [a, b]\nx: &x {k: v}\ny: *x\n"),
            Ok(())
        );
        assert_eq!(timed(""), Ok(()));
    }

    #[test]
    fn a_large_anchor_repeated_is_refused() {
        // 20 KB of text referenced 2,500 times: 50 MB once expanded.
        let mut yaml = format!("a: &a \"{}\"\nb: [", "x".repeat(20_000));
        yaml.push_str(&vec!["*a"; 2500].join(","));
        yaml.push_str("]\n");
        assert_eq!(timed(&yaml), Err(BudgetError::TooMuchText));
    }

    #[test]
    fn nested_alias_growth_is_refused() {
        let mut yaml = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*l{}", i - 1); 10].join(",");
            yaml.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
        }
        assert_eq!(timed(&yaml), Err(BudgetError::TooManyValues));
    }

    #[test]
    fn deep_nesting_is_refused_at_the_limit() {
        let ok = format!(
            "a: {}{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(timed(&ok), Ok(()));
        let deep = format!("a: {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(timed(&deep), Err(BudgetError::TooDeep));
        // The scanner looks ahead and has a nesting limit of its own (256), which may
        // answer first.
        for levels in [20_000, 100_000] {
            let flow = format!("tags: {}{}", "[".repeat(levels), "]".repeat(levels));
            let block = "- ".repeat(levels);
            for deep in [flow, block] {
                assert!(matches!(
                    timed(&deep),
                    Err(BudgetError::TooDeep | BudgetError::Syntax(_))
                ));
            }
        }
    }

    #[test]
    fn many_small_values_are_counted() {
        let yaml = format!("tags: [{}]", vec!["a"; MAX_VALUES as usize].join(","));
        assert_eq!(timed(&yaml), Err(BudgetError::TooManyValues));
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(timed("a: [\n"), Err(BudgetError::Syntax(_))));
        assert!(matches!(
            timed("a: *nowhere\n"),
            Err(BudgetError::Syntax(_))
        ));
    }
}
