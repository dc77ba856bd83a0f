//! The part of [crc-fast](https://crates.io/crates/crc-fast)'s API that `aws-smithy-checksums`
//! calls (`Digest::new`, `update`, `finalize`, `checksum`), for the three algorithms S3 checksums
//! use. Table-driven, 16 bytes a step: slower than crc-fast's SIMD, still a small part of an
//! upload of a few MB. Why this crate exists: its Cargo.toml.

use crc::{CRC_32_ISCSI, CRC_32_ISO_HDLC, CRC_64_NVME, Crc, Table};

static CRC32_ISO_HDLC: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISO_HDLC);
static CRC32_ISCSI: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);
static CRC64_NVME: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_NVME);

/// The algorithms S3 checksums use, named as crc-fast names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrcAlgorithm {
    /// CRC-32 (`x-amz-checksum-crc32`).
    Crc32IsoHdlc,
    /// CRC-32C (`x-amz-checksum-crc32c`).
    Crc32Iscsi,
    /// CRC-64/NVME (`x-amz-checksum-crc64nvme`).
    Crc64Nvme,
}

/// A running checksum; [`Digest::finalize`] gives it widened to `u64`, as crc-fast does.
pub struct Digest {
    state: State,
}

enum State {
    Crc32IsoHdlc(crc::Digest<'static, u32, Table<16>>),
    Crc32Iscsi(crc::Digest<'static, u32, Table<16>>),
    Crc64Nvme(crc::Digest<'static, u64, Table<16>>),
}

impl Digest {
    pub fn new(algorithm: CrcAlgorithm) -> Self {
        let state = match algorithm {
            CrcAlgorithm::Crc32IsoHdlc => State::Crc32IsoHdlc(CRC32_ISO_HDLC.digest()),
            CrcAlgorithm::Crc32Iscsi => State::Crc32Iscsi(CRC32_ISCSI.digest()),
            CrcAlgorithm::Crc64Nvme => State::Crc64Nvme(CRC64_NVME.digest()),
        };
        Self { state }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32IsoHdlc(digest) | State::Crc32Iscsi(digest) => digest.update(data),
            State::Crc64Nvme(digest) => digest.update(data),
        }
    }

    pub fn finalize(self) -> u64 {
        match self.state {
            State::Crc32IsoHdlc(digest) | State::Crc32Iscsi(digest) => u64::from(digest.finalize()),
            State::Crc64Nvme(digest) => digest.finalize(),
        }
    }
}

// aws-smithy-checksums derives Debug on the structs that hold a Digest.
impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithm = match self.state {
            State::Crc32IsoHdlc(_) => CrcAlgorithm::Crc32IsoHdlc,
            State::Crc32Iscsi(_) => CrcAlgorithm::Crc32Iscsi,
            State::Crc64Nvme(_) => CrcAlgorithm::Crc64Nvme,
        };
        f.debug_struct("Digest")
            .field("algorithm", &algorithm)
            .finish_non_exhaustive()
    }
}

/// The checksum of `data` in one call.
pub fn checksum(algorithm: CrcAlgorithm, data: &[u8]) -> u64 {
    let mut digest = Digest::new(algorithm);
    digest.update(data);
    digest.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The catalogue's check values (the checksum of "123456789"), which crc-fast checks too.
    #[test]
    fn each_algorithm_gives_its_check_value() {
        assert_eq!(checksum(CrcAlgorithm::Crc32IsoHdlc, b"123456789"), 0xcbf4_3926);
        assert_eq!(checksum(CrcAlgorithm::Crc32Iscsi, b"123456789"), 0xe306_9283);
        assert_eq!(checksum(CrcAlgorithm::Crc64Nvme, b"123456789"), 0xae8b_1486_0a79_9888);
    }

    // The empty input, and a digest fed in pieces.
    #[test]
    fn pieces_give_the_checksum_of_the_whole() {
        assert_eq!(checksum(CrcAlgorithm::Crc32IsoHdlc, b""), 0);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for algorithm in [
            CrcAlgorithm::Crc32IsoHdlc,
            CrcAlgorithm::Crc32Iscsi,
            CrcAlgorithm::Crc64Nvme,
        ] {
            let mut digest = Digest::new(algorithm);
            for piece in data.chunks(777) {
                digest.update(piece);
            }
            assert_eq!(digest.finalize(), checksum(algorithm, &data));
        }
    }
}
