//! Links to stored images that our own API serves (`GET /v1/files/{media_id}`), signed so that
//! a client without the API key (any HTTP client given the link) can download the image until
//! the link expires (docs/design.md, "Replicate-compatible API").

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::ids::MediaId;
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
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!());
        mac.update(format!("{media}.{expires}").as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether a link's signature is ours and the link has not expired at `now`.
    pub fn verify(&self, media: MediaId, expires: i64, signature: &str, now: i64) -> bool {
        let expected = self.sign(media, expires);
        now <= expires
            && expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
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
}
