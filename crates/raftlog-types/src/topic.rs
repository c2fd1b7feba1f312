//! Topic names and their validation.

use crate::limits::TOPIC_NAME_LEN_MAX;

/// Why a topic name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty name.
    #[error("topic name is empty")]
    Empty,
    /// Too long.
    #[error("topic name is {len} characters, longer than {TOPIC_NAME_LEN_MAX}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// "." and ".." would be confusing as directory-like names.
    #[error("topic name cannot be \".\" or \"..\"")]
    Dots,
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error("topic name contains {found:?}; allowed are ASCII letters, digits, '.', '_' and '-'")]
    BadCharacter {
        /// The first offending character.
        found: char,
    },
}

/// Checks a topic name: 1 to 249 characters of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return Err(TopicNameError::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Dots);
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicNameError::BadCharacter { found });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names_and_rejects_the_rest() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(validate_topic_name(".."), Err(TopicNameError::Dots));
        assert_eq!(
            validate_topic_name("a/b"),
            Err(TopicNameError::BadCharacter { found: '/' })
        );
        assert_eq!(
            validate_topic_name(&"x".repeat(250)),
            Err(TopicNameError::TooLong { len: 250 })
        );
    }
}
