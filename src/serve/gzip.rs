//! gzip bodies without allocating compressor state per response.

/// A gzip writer that keeps its deflate state between scrapes: allocating
/// that state (hundreds of KiB) per response cost more than compressing.
pub struct Gzip {
    deflate: flate2::Compress,
}

impl Default for Gzip {
    fn default() -> Self {
        // Raw deflate at the fastest level: bodies are small, CPU is the budget.
        Gzip {
            deflate: flate2::Compress::new(flate2::Compression::fast(), false),
        }
    }
}

impl Gzip {
    /// `input` as a gzip member (RFC 1952) in `out` (cleared first).
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        // magic, deflate, no flags, no mtime, no extra flags, OS unknown
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        self.deflate.reset();
        out.reserve(input.len() / 2 + 64);
        loop {
            let consumed = self.deflate.total_in() as usize;
            let status =
                self.deflate
                    .compress_vec(&input[consumed..], out, flate2::FlushCompress::Finish);
            match status {
                Ok(flate2::Status::StreamEnd) => break,
                Ok(_) => out.reserve(out.capacity().max(4096)),
                Err(_) => unreachable!("deflate of an in-memory buffer cannot fail"),
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn gzip_round_trips_and_reuses_its_state() {
        let mut gz = super::Gzip::default();
        let mut out = Vec::new();
        for input in [&b""[..], b"hello", &b"metric_total 1\n".repeat(5000)] {
            gz.compress(input, &mut out);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input);
        }
    }
}
