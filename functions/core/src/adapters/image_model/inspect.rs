//! What a model's bytes really are: the format and size are read from the image itself, never
//! taken from what a server claimed.

use crate::domain::format::OutputFormat;
use crate::ports::{GeneratedImage, ModelError};

pub fn inspect(bytes: Vec<u8>) -> Result<GeneratedImage, ModelError> {
    let unsupported = |detail: String| ModelError::Permanent {
        code: "unsupported_output".into(),
        message: detail,
    };
    // Only the headers are read: decoding an image to learn its size would link a decoder for
    // every format into generate, about 175 kB of its zip (docs/benchmarks.md).
    let format = match imagesize::image_type(&bytes) {
        Ok(imagesize::ImageType::Png) => OutputFormat::Png,
        Ok(imagesize::ImageType::Jpeg) => OutputFormat::Jpg,
        Ok(imagesize::ImageType::Webp) => OutputFormat::Webp,
        Ok(other) => {
            return Err(unsupported(format!(
                "the model produced {other:?}, not PNG, JPEG or WebP"
            )));
        }
        Err(_) => return Err(unsupported("the model's output is not an image".into())),
    };
    let size = imagesize::blob_size(&bytes).map_err(|e| unsupported(format!("unreadable image: {e}")))?;
    let dimension = |value: usize| {
        u32::try_from(value).map_err(|_| unsupported(format!("an image {value} pixels across is too large")))
    };
    let (width, height) = (dimension(size.width)?, dimension(size.height)?);
    Ok(GeneratedImage {
        bytes,
        format,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::tests::sample_request;

    #[test]
    fn reads_format_and_size_from_the_bytes() {
        for format in [OutputFormat::Png, OutputFormat::Jpg, OutputFormat::Webp] {
            let mut request = sample_request();
            request.width = 256;
            request.height = 288;
            request.output_format = format;
            let rendered = super::super::local::render(&request, 0).unwrap();
            let seen = inspect(rendered.bytes).unwrap();
            assert_eq!((seen.format, seen.width, seen.height), (format, 256, 288));
        }
    }

    #[test]
    fn refuses_an_image_cut_short() {
        let mut request = sample_request();
        request.output_format = OutputFormat::Png;
        let mut bytes = super::super::local::render(&request, 0).unwrap().bytes;
        bytes.truncate(12);
        let err = inspect(bytes).unwrap_err();
        assert!(matches!(err, ModelError::Permanent { ref code, .. } if code == "unsupported_output"));
    }

    #[test]
    fn refuses_what_is_not_an_image() {
        let err = inspect(b"<html>nope</html>".to_vec()).unwrap_err();
        assert!(matches!(err, ModelError::Permanent { ref code, .. } if code == "unsupported_output"));
    }
}
