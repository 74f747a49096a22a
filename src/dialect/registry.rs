//! The registry: every dialect the server speaks, one line each. Adding a dialect is a folder
//! under `src/dialect/` with a type implementing [`super::Dialect`], its `ID` constant, and one
//! line here; the position in [`DIALECTS`] is its id (checked at compile time).

use super::Dialect;

/// Every dialect, indexed by [`super::DialectId`].
pub static DIALECTS: [&dyn Dialect; DIALECT_COUNT] = [
    &super::virola::Virola,
    &super::echo::Echo,
    &super::osu::Osu,
    &super::big::Big,
    &super::rechat::Rechat,
];

/// How many dialects there are (the length of a bundle's frame array).
pub const DIALECT_COUNT: usize = 5;

// Each dialect's `ID` is its position above; a mask has a bit per dialect.
const _: () = {
    assert!(super::virola::ID.0 == 0);
    assert!(super::echo::ID.0 == 1);
    assert!(super::osu::ID.0 == 2);
    assert!(super::big::ID.0 == 3);
    assert!(super::rechat::ID.0 == 4);
    assert!(DIALECT_COUNT <= super::DialectMask::BITS as usize);
};
