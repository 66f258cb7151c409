/// Finds the needle in a haystack.
pub fn find(haystack: &str) -> Option<usize> {
    haystack.find("needle") // FIXME: case-insensitive
}

// XXXL is not a marker, TODOS neither.
pub const HACK_FREE: bool = true;
