//! Text cut to a size in bytes, never inside a character: what every bounded copy of output,
//! code or a name needs.

/// The longest start of `text` that is at most `max_bytes` long and ends at a character.
pub fn head(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let end = (0..=max_bytes).rev().find(|&at| text.is_char_boundary(at)).unwrap_or(0);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_a_character_within_the_bound() {
        assert_eq!(head("abc", 5), "abc");
        assert_eq!(head("abc", 3), "abc");
        assert_eq!(head("abc", 2), "ab");
        assert_eq!(head("éé", 3), "é", "the second é would be cut in two");
        assert_eq!(head("é", 1), "");
        assert_eq!(head("", 0), "");
    }
}
