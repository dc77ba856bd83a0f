//! What a model's bytes really are: the format and size are read from the image itself, never
//! taken from what a server claimed.

use crate::domain::format::OutputFormat;
use crate::ports::{GeneratedImage, ModelError};

pub fn inspect(bytes: Vec<u8>) -> Result<GeneratedImage, ModelError> {
    let unsupported = |detail: String| ModelError::Permanent {
        code: "unsupported_output".into(),
        message: detail,
    };
    let format = match image::guess_format(&bytes) {
        Ok(image::ImageFormat::Png) => OutputFormat::Png,
        Ok(image::ImageFormat::Jpeg) => OutputFormat::Jpg,
        Ok(image::ImageFormat::WebP) => OutputFormat::Webp,
        Ok(other) => {
            return Err(unsupported(format!(
                "the model produced {other:?}, not PNG, JPEG or WebP"
            )));
        }
        Err(_) => return Err(unsupported("the model's output is not an image".into())),
    };
    let (width, height) = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| unsupported(e.to_string()))?
        .into_dimensions()
        .map_err(|e| unsupported(format!("unreadable image: {e}")))?;
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
        let mut request = sample_request();
        request.width = 256;
        request.height = 288;
        request.output_format = OutputFormat::Webp;
        let rendered = super::super::local::render(&request, 0).unwrap();
        let seen = inspect(rendered.bytes).unwrap();
        assert_eq!((seen.format, seen.width, seen.height), (OutputFormat::Webp, 256, 288));
    }

    #[test]
    fn refuses_what_is_not_an_image() {
        let err = inspect(b"<html>nope</html>".to_vec()).unwrap_err();
        assert!(matches!(err, ModelError::Permanent { ref code, .. } if code == "unsupported_output"));
    }
}
