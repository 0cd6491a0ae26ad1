//! Property test: random sequences of pushes and pops on a `Ring` behave exactly like a
//! `VecDeque` bounded at the ring's capacity (proptest, shrinking to a minimal failing
//! sequence). The same driver shape suits a fuzz target: it only uses the public API.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;

use pool::Ring;

#[derive(Clone, Debug)]
enum Op {
    Push(u32),
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    // Bias slightly towards pushes so runs reach "full" as well as "empty".
    prop_oneof![3 => any::<u32>().prop_map(Op::Push), 2 => Just(Op::Pop)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ring_matches_bounded_vecdeque(
        requested in 1usize..40,
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let ring = Ring::new(requested);
        let capacity = ring.capacity();
        prop_assert!(capacity.is_power_of_two() && capacity >= requested.max(2));
        let mut model = VecDeque::with_capacity(capacity);
        for op in ops {
            match op {
                Op::Push(value) => {
                    let expected = if model.len() < capacity {
                        model.push_back(value);
                        Ok(())
                    } else {
                        Err(value)
                    };
                    prop_assert_eq!(ring.try_push(value), expected);
                }
                Op::Pop => prop_assert_eq!(ring.try_pop(), model.pop_front()),
            }
            prop_assert_eq!(ring.len(), model.len());
            prop_assert_eq!(ring.is_empty(), model.is_empty());
        }
        let rest: Vec<u32> = std::iter::from_fn(|| ring.try_pop()).collect();
        prop_assert_eq!(rest, Vec::from(model));
    }

    #[test]
    fn single_producer_matches_bounded_vecdeque(
        requested in 1usize..40,
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let (mut producer, ring) = Ring::with_single_producer(requested);
        let capacity = ring.capacity();
        let mut model = VecDeque::with_capacity(capacity);
        for op in ops {
            match op {
                Op::Push(value) => {
                    let expected = if model.len() < capacity {
                        model.push_back(value);
                        Ok(())
                    } else {
                        Err(value)
                    };
                    prop_assert_eq!(producer.try_push(value), expected);
                }
                Op::Pop => prop_assert_eq!(ring.try_pop(), model.pop_front()),
            }
            prop_assert_eq!(ring.len(), model.len());
        }
    }
}
