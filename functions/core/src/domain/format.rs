//! The image formats a job can ask for.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Webp,
    Jpg,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Png, OutputFormat::Webp, OutputFormat::Jpg];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "png" => Some(OutputFormat::Png),
            "webp" => Some(OutputFormat::Webp),
            "jpg" => Some(OutputFormat::Jpg),
            _ => None,
        }
    }

    /// The name clients use, which is also the file extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Jpg => "jpg",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Jpg => "image/jpeg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output format {0:?}")]
pub struct UnknownFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownFormat;

    fn from_str(raw: &str) -> Result<Self, UnknownFormat> {
        Self::parse(raw).ok_or_else(|| UnknownFormat(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for format in [OutputFormat::Png, OutputFormat::Webp, OutputFormat::Jpg] {
            assert_eq!(format.extension().parse::<OutputFormat>(), Ok(format));
        }
        assert!("gif".parse::<OutputFormat>().is_err());
        assert_eq!(OutputFormat::Jpg.content_type(), "image/jpeg");
    }
}
