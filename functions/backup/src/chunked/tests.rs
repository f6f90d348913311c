use super::*;
use std::io::Read;

fn encrypt(key: &[u8], context: &[u8], message: &[u8]) -> Vec<u8> {
    let mut enc = Encryptor::new(key, context, Vec::new()).expect("encryptor");
    // Odd write sizes exercise the buffering across chunk boundaries.
    for piece in message.chunks(7919) {
        enc.write_all(piece).expect("write");
    }
    enc.finish().expect("finish")
}

fn decrypt(key: &[u8], context: &[u8], ct: &[u8]) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut dec = match Decryptor::new(key, context, ct) {
        Ok(d) => d,
        Err(e) => return (out, Some(e)),
    };
    let mut buf = [0u8; 5000];
    loop {
        match dec.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn error_of(e: Option<io::Error>) -> Option<ChunkError> {
    e.and_then(|e| e.into_inner()).and_then(|inner| inner.downcast::<ChunkError>().ok()).map(|b| *b)
}

#[test]
fn round_trips_every_boundary_length() {
    let key = [7u8; 32];
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5] {
        let message: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let ct = encrypt(&key, b"ctx", &message);
        let full_chunks = len / CHUNK;
        assert_eq!(ct.len(), HEADER + full_chunks * (CHUNK + TAG) + (len % CHUNK) + TAG, "len {len}");
        let (plain, err) = decrypt(&key, b"ctx", &ct);
        assert!(err.is_none(), "len {len}: {err:?}");
        assert_eq!(plain, message);
    }
}

#[test]
fn tampering_truncation_reordering_and_context_are_refused() {
    let key = [9u8; 32];
    let message: Vec<u8> = (0..3 * CHUNK + 100).map(|i| i as u8).collect();
    let ct = encrypt(&key, b"db=portcullis", &message);
    let mut flipped = ct.clone();
    flipped[HEADER + CHUNK + TAG + 3] ^= 1;
    let (plain, err) = decrypt(&key, b"db=portcullis", &flipped);
    assert_eq!(error_of(err), Some(ChunkError::Chunk { index: 1 }));
    assert_eq!(plain.len(), CHUNK, "only the authenticated first chunk was released");

    let (_, err) = decrypt(&key, b"db=portcullis", &ct[..ct.len() - (100 + TAG)]);
    assert_eq!(error_of(err), Some(ChunkError::Truncated { index: 2 }));

    let mut swapped = ct[..HEADER].to_vec();
    swapped.extend_from_slice(&ct[HEADER + CHUNK + TAG..HEADER + 2 * (CHUNK + TAG)]);
    swapped.extend_from_slice(&ct[HEADER..HEADER + CHUNK + TAG]);
    swapped.extend_from_slice(&ct[HEADER + 2 * (CHUNK + TAG)..]);
    let (plain, err) = decrypt(&key, b"db=portcullis", &swapped);
    assert_eq!(error_of(err), Some(ChunkError::Chunk { index: 0 }));
    assert!(plain.is_empty());

    let (_, err) = decrypt(&key, b"db=other", &ct);
    assert_eq!(error_of(err), Some(ChunkError::Commitment));
    let (_, err) = decrypt(&[1u8; 32], b"db=portcullis", &ct);
    assert_eq!(error_of(err), Some(ChunkError::Commitment));
}

fn vectors() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/wycheproof/c2sp_chunked_encryption_aes_256_gcm_test.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

fn sha512_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data))
}

#[test]
fn wycheproof_cobblestone_vectors() {
    let vectors = vectors();
    let mut valid = 0;
    let mut invalid = 0;
    for group in vectors["testGroups"].as_array().expect("groups") {
        for t in group["tests"].as_array().expect("tests") {
            let id = &t["tcId"];
            let key = hex::decode(t["key"].as_str().expect("key")).expect("hex");
            let ctx = hex::decode(t["ctx"].as_str().expect("ctx")).expect("hex");
            let mut ct = Vec::new();
            flate2::read::ZlibDecoder::new(&hex::decode(t["ct"].as_str().expect("ct")).expect("hex")[..])
                .read_to_end(&mut ct)
                .expect("zlib");
            let (plain, err) = decrypt(&key, &ctx, &ct);
            let expected_len = t["msgLength"].as_u64().map(|n| n as usize);
            if t["result"] == "valid" {
                assert!(err.is_none(), "tcId {id}: {err:?}");
                assert_eq!(Some(plain.len()), expected_len, "tcId {id}");
                assert_eq!(Some(sha512_hex(&plain).as_str()), t["msgSha512"].as_str(), "tcId {id}");
                valid += 1;
            } else {
                assert!(err.is_some(), "tcId {id} ({}) decrypted", t["comment"]);
                // Never a byte past the valid prefix; where the vector names the prefix, it is exact.
                let prefix = expected_len.unwrap_or(0);
                assert!(
                    plain.len() <= prefix,
                    "tcId {id}: released {} bytes past the valid prefix",
                    plain.len()
                );
                if plain.len() == prefix && prefix > 0 {
                    assert_eq!(Some(sha512_hex(&plain).as_str()), t["msgSha512"].as_str(), "tcId {id}");
                }
                invalid += 1;
            }
        }
    }
    assert!(valid >= 5 && invalid >= 20, "{valid} valid, {invalid} invalid");
}

/// A write that arrives while the buffer holds exactly one chunk (zstd hands
/// its output over in fixed-size blocks, so real backups land there at once)
/// must seal that chunk and nothing else: an empty chunk in the middle of the
/// stream reads as the end of the message.
#[test]
fn a_write_arriving_on_a_full_buffer_does_not_end_the_message() {
    let key = [3u8; 32];
    let message: Vec<u8> = (0..2 * CHUNK + 1).map(|i| (i * 7 % 253) as u8).collect();
    let mut enc = Encryptor::new(&key, b"ctx", Vec::new()).expect("encryptor");
    enc.write_all(&message[..CHUNK]).expect("first chunk");
    enc.write_all(&message[CHUNK..2 * CHUNK]).expect("second chunk");
    enc.write_all(&message[2 * CHUNK..]).expect("tail");
    let ct = enc.finish().expect("finish");
    assert_eq!(ct.len(), HEADER + 2 * (CHUNK + TAG) + 1 + TAG);
    let (plain, err) = decrypt(&key, b"ctx", &ct);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(plain, message);
}

/// Write sizes that stress the buffering: empty writes, exactly one chunk,
/// one byte either side of it, pieces that end on a chunk boundary, and
/// arbitrary sizes up to a few chunks.
fn write_size() -> impl proptest::strategy::Strategy<Value = usize> {
    use proptest::prelude::*;
    prop_oneof![
        Just(0),
        Just(1),
        Just(CHUNK),
        Just(CHUNK - 1),
        Just(CHUNK + 1),
        Just(2 * CHUNK),
        Just(128 * 1024), // zstd's output block
        1..64usize,
        0..3 * CHUNK + 17,
    ]
}

/// A writer that takes at most `limit` bytes per call, as a pipe or socket may.
struct Trickle {
    out: Vec<u8>,
    limit: usize,
}

impl Write for Trickle {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.limit);
        self.out.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any sequence of writes (through `write`, whose partial writes are
    /// honoured, not `write_all`) and any read sizes round-trip exactly, and
    /// the ciphertext has the length the format defines.
    #[test]
    fn any_sequence_of_writes_round_trips(
        sizes in proptest::collection::vec(write_size(), 0..12),
        read_size in 1..40_000usize,
        sink_limit in proptest::prop_oneof![proptest::strategy::Just(usize::MAX), 1..50_000usize],
        seed in proptest::prelude::any::<u8>(),
    ) {
        let key = [seed; 32];
        let total: usize = sizes.iter().sum();
        let message: Vec<u8> = (0..total).map(|i| ((i as u64 * 2_654_435_761) >> 7) as u8 ^ seed).collect();
        let mut enc = Encryptor::new(&key, b"ctx", Trickle { out: Vec::new(), limit: sink_limit }).expect("encryptor");
        let mut at = 0;
        for size in &sizes {
            let piece = &message[at..at + size];
            let mut done = 0;
            while done < piece.len() {
                let n = enc.write(&piece[done..]).expect("write");
                proptest::prop_assert!(n > 0, "a write of {} bytes accepted none", piece.len() - done);
                done += n;
            }
            proptest::prop_assert_eq!(enc.write(&[]).expect("empty write"), 0);
            at += size;
        }
        let ct = enc.finish().expect("finish").out;
        proptest::prop_assert_eq!(ct.len(), HEADER + (total / CHUNK) * (CHUNK + TAG) + total % CHUNK + TAG);

        let mut dec = Decryptor::new(&key, b"ctx", &ct[..]).expect("decryptor");
        let mut plain = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = dec.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&buf[..n]);
        }
        proptest::prop_assert_eq!(dec.chunks(), (total / CHUNK) as u64 + 1);
        proptest::prop_assert!(plain == message, "{} bytes back for {}", plain.len(), total);
    }

    /// Cutting the ciphertext anywhere after the header never decrypts, and
    /// never releases a byte of a chunk that did not authenticate.
    #[test]
    fn any_truncation_is_refused(len in 0..3 * CHUNK + 100, cut_from_end in 1..2 * (CHUNK + TAG)) {
        let key = [5u8; 32];
        let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let ct = encrypt(&key, b"ctx", &message);
        let keep = ct.len().saturating_sub(cut_from_end).max(HEADER);
        let (plain, err) = decrypt(&key, b"ctx", &ct[..keep]);
        proptest::prop_assert!(err.is_some(), "a truncated message decrypted");
        proptest::prop_assert!(plain.len() <= keep.saturating_sub(HEADER) && message.starts_with(&plain));
    }
}

/// A sink that fails once, after taking part of a chunk.
struct FailsOnce {
    out: Vec<u8>,
    failed: bool,
}

impl Write for FailsOnce {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.failed && self.out.len() > HEADER {
            self.failed = true;
            return Err(io::Error::other("disk full"));
        }
        self.out.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// After the sink fails in the middle of a chunk, the encryptor refuses to go
/// on: sealing again would reuse that chunk's nonce.
#[test]
fn a_failed_write_poisons_the_encryptor() {
    let mut enc =
        Encryptor::new(&[1u8; 32], b"ctx", FailsOnce { out: Vec::new(), failed: false }).expect("encryptor");
    let data = vec![0x55u8; 3 * CHUNK];
    assert!(enc.write_all(&data).is_err(), "the sink's failure surfaces");
    assert!(enc.write(&data).is_err(), "a later write is refused");
    assert!(enc.finish().is_err(), "finish is refused");
}
