//! `Spinner`: the spin policies' decisions, checked without a clock. `None` and `Fixed` never
//! change their budget; `Adaptive` spins at most its cap, stops spinning once idle gaps exceed
//! the cap, and comes back within a few short gaps (proptest over random gap sequences). How
//! much each policy saves is a benchmark's question (`benches/ring.rs`), not a test's. Skipped
//! under loom, where the adaptive policy spins once.
#![cfg(not(loom))]

use std::time::Duration;

use pool::{SpinBudget, SpinPolicy, Spinner, DEFAULT_ADAPTIVE_CAP};
use proptest::prelude::*;

const CAP: Duration = Duration::from_micros(10);

#[test]
fn none_and_fixed_ignore_the_gaps() {
    let mut none = Spinner::new(SpinPolicy::None);
    let mut fixed = Spinner::new(SpinPolicy::Fixed(32));
    for gap in [0, 1, 1_000, 1_000_000_000] {
        none.record_gap(Duration::from_nanos(gap));
        fixed.record_gap(Duration::from_nanos(gap));
        assert_eq!(none.budget(), SpinBudget::Polls(0));
        assert_eq!(fixed.budget(), SpinBudget::Polls(32));
    }
    assert_eq!(
        SpinPolicy::default(),
        SpinPolicy::Fixed(pool::DEFAULT_SPIN_LIMIT)
    );
}

#[test]
fn adaptive_starts_by_spinning_up_to_the_cap() {
    assert_eq!(
        SpinPolicy::adaptive(),
        SpinPolicy::Adaptive {
            cap: DEFAULT_ADAPTIVE_CAP
        }
    );
    let spinner = Spinner::new(SpinPolicy::Adaptive { cap: CAP });
    assert_eq!(spinner.budget(), SpinBudget::For(CAP));
}

/// Jobs arriving slower than the cap turn spinning off; a few quick ones turn it back on.
#[test]
fn adaptive_stops_spinning_on_slow_traffic_and_resumes_on_fast() {
    let mut spinner = Spinner::new(SpinPolicy::Adaptive { cap: CAP });
    for _ in 0..20 {
        spinner.record_gap(Duration::from_secs(1)); // an idle server
    }
    assert_eq!(spinner.budget(), SpinBudget::Polls(0), "parks at once");
    assert!(
        spinner.gap_estimate() <= 2 * CAP,
        "one long sleep is clamped"
    );
    let mut quick_gaps = 0;
    while spinner.budget() == SpinBudget::Polls(0) {
        spinner.record_gap(Duration::from_micros(1));
        quick_gaps += 1;
    }
    assert!(
        quick_gaps <= 3,
        "spinning resumed after {quick_gaps} quick gaps"
    );
    // Steady 2 µs gaps: spin about twice that.
    for _ in 0..50 {
        spinner.record_gap(Duration::from_micros(2));
    }
    let SpinBudget::For(spin) = spinner.budget() else {
        panic!("should spin");
    };
    assert!(
        spin >= Duration::from_micros(3) && spin <= Duration::from_micros(5),
        "{spin:?}"
    );
    // Very short gaps: the floor of a quarter of the cap.
    for _ in 0..50 {
        spinner.record_gap(Duration::ZERO);
    }
    assert_eq!(spinner.budget(), SpinBudget::For(CAP / 4));
}

proptest! {
    /// Whatever the gaps: the estimate stays within twice the cap, and the budget is either
    /// "park at once" or a spin between a quarter of the cap and the cap, chosen by whether
    /// the estimate is within the cap.
    #[test]
    fn adaptive_budget_is_bounded(gaps_ns in prop::collection::vec(0u64..100_000_000, 0..100)) {
        let mut spinner = Spinner::new(SpinPolicy::Adaptive { cap: CAP });
        for gap in gaps_ns {
            spinner.record_gap(Duration::from_nanos(gap));
            prop_assert!(spinner.gap_estimate() <= 2 * CAP);
            match spinner.budget() {
                SpinBudget::Polls(0) => prop_assert!(spinner.gap_estimate() > CAP),
                SpinBudget::For(spin) => {
                    prop_assert!(spinner.gap_estimate() <= CAP);
                    prop_assert!(spin >= CAP / 4 && spin <= CAP, "{:?}", spin);
                }
                other => prop_assert!(false, "unexpected budget {:?}", other),
            }
        }
    }
}
