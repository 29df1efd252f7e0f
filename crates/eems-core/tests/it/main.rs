//! eems-core integration tests: property tests of the parsers of outside data.

mod proptest_parsers;
