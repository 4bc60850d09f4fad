//! Shadow-mode evaluation: predictions against a programme's reference
//! grades (issue 6). So far the figures themselves ([`metrics`]), computed
//! as scikit-learn computes them and checked against it in the tests; the
//! `nightscreen evaluate` command, its tables, plots and report come next.

pub mod metrics;
