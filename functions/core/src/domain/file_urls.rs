//! Links to stored images that our own API serves (`GET /v1/files/{media_id}`), signed so that
//! a client without the API key (any HTTP client given the link) can download the image until
//! the link expires (docs/design.md, "Replicate-compatible API"); and links to a job's progress
//! stream, signed the same way, since Replicate's clients send no key to a stream's URL
//! (docs/design.md, "Progress stream").

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::ids::{JobId, MediaId};
use super::secret::Secret;

/// Signs and checks file links with one secret of the deployment.
#[derive(Debug, Clone)]
pub struct FileLinkSigner {
    secret: Secret,
}

impl FileLinkSigner {
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }

    /// The signature of a link to `media` that holds until `expires` (epoch seconds), in hex.
    pub fn sign(&self, media: MediaId, expires: i64) -> String {
        self.mac(&format!("{media}.{expires}"))
    }

    /// Whether a link's signature is ours and the link has not expired at `now`.
    pub fn verify(&self, media: MediaId, expires: i64, signature: &str, now: i64) -> bool {
        now <= expires && same(&self.sign(media, expires), signature)
    }

    /// The signature of a link to `job`'s progress stream that holds until `expires`: a message
    /// no file link signs, so that neither link stands for the other.
    pub fn sign_stream(&self, job: JobId, expires: i64) -> String {
        self.mac(&format!("stream.{job}.{expires}"))
    }

    pub fn verify_stream(&self, job: JobId, expires: i64, signature: &str, now: i64) -> bool {
        now <= expires && same(&self.sign_stream(job, expires), signature)
    }

    fn mac(&self, message: &str) -> String {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!());
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Whether two signatures are the same, in a time that does not tell where they differ.
fn same(expected: &str, signature: &str) -> bool {
    expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_link_verifies_until_it_expires_and_not_after_a_change() {
        let signer = FileLinkSigner::new(Secret::new("a local secret"));
        let media = MediaId::new();
        let signature = signer.sign(media, 1_000);
        assert!(signer.verify(media, 1_000, &signature, 999));
        assert!(!signer.verify(media, 1_000, &signature, 1_001));
        assert!(!signer.verify(media, 2_000, &signature, 999));
        assert!(!signer.verify(MediaId::new(), 1_000, &signature, 999));
        assert!(!FileLinkSigner::new(Secret::new("another")).verify(media, 1_000, &signature, 999));
    }

    #[test]
    fn a_stream_link_is_no_file_link_and_holds_until_it_expires() {
        let signer = FileLinkSigner::new(Secret::new("a local secret"));
        let job = JobId::new();
        let signature = signer.sign_stream(job, 1_000);
        assert!(signer.verify_stream(job, 1_000, &signature, 1_000));
        assert!(!signer.verify_stream(job, 1_000, &signature, 1_001));
        assert!(!signer.verify_stream(JobId::new(), 1_000, &signature, 999));
        let same_uuid = MediaId::parse(&job.to_string()).unwrap();
        assert!(!signer.verify(same_uuid, 1_000, &signature, 999));
    }
}
